//! A state-machine test of the pipeline against a reference model: random
//! submits (fire-and-forget and waiting), sink faults (errors, panics,
//! slowness), drains and restarts. After every step the accounting
//! invariant holds; at the end every submitted event is exactly once in the
//! chain or in the fallback file (nothing is lost: the file is writable), in
//! submit order per producer.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use audit_core::AuditEvent;
use audit_core::chain_writer::ChainSinkOptions;
use audit_core::dead_letter::FallbackFile;
use audit_core::keys::Keyring;
use audit_core::metrics::MetricsSnapshot;
use audit_core::pipeline::{AuditPipeline, SubmitError};
use audit_core::retry::RetryPolicy;
use audit_core::sink::{AppendOutcome, AuditSink, ErrorClass, SinkError};
use audit_testkit::sinks::{MemoryChain, MemoryChainSink};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

const PRODUCERS: usize = 3;
const MAX_RESTARTS: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Error,
    Panic,
    Slow,
}

#[derive(Debug, Clone)]
enum Step {
    Submit { producer: usize, count: usize },
    SubmitWait { producer: usize },
    Fault(Fault),
    Drain,
    Restart,
}

/// The reference model: how many events each producer submitted and how
/// many faults are queued for the sink.
#[derive(Debug, Clone, Default)]
struct Model {
    submitted: [usize; PRODUCERS],
    faults: usize,
}

struct ModelMachine;

impl ReferenceStateMachine for ModelMachine {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<Step> {
        prop_oneof![
            4 => (0..PRODUCERS, 1..40usize).prop_map(|(producer, count)| Step::Submit { producer, count }),
            1 => (0..PRODUCERS).prop_map(|producer| Step::SubmitWait { producer }),
            2 => prop_oneof![Just(Fault::Error), Just(Fault::Panic), Just(Fault::Slow)].prop_map(Step::Fault),
            1 => Just(Step::Drain),
            1 => Just(Step::Restart),
        ]
        .boxed()
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        match step {
            Step::Submit { producer, count } => state.submitted[*producer] += count,
            Step::SubmitWait { producer } => state.submitted[*producer] += 1,
            Step::Fault(_) => state.faults += 1,
            Step::Drain | Step::Restart => {}
        }
        state
    }
}

/// A memory chain sink that first consumes one queued fault per call.
struct FaultySink {
    faults: Arc<Mutex<VecDeque<Fault>>>,
    inner: MemoryChainSink,
}

#[async_trait]
impl AuditSink for FaultySink {
    async fn append_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<AppendOutcome>, SinkError> {
        let fault = self.faults.lock().unwrap().pop_front();
        match fault {
            Some(Fault::Error) => {
                return Err(SinkError::new(
                    "faulty",
                    ErrorClass::Transient,
                    "injected error",
                ));
            }
            Some(Fault::Panic) => panic!("injected panic"),
            Some(Fault::Slow) => tokio::time::sleep(Duration::from_millis(3)).await,
            None => {}
        }
        self.inner.append_batch(events).await
    }
    fn race_retries(&self) -> u64 {
        self.inner.race_retries()
    }
    fn describe(&self) -> String {
        "faulty-memory".into()
    }
}

struct Sut {
    runtime: tokio::runtime::Runtime,
    chain: MemoryChain,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    fallback: PathBuf,
    pipeline: Option<AuditPipeline>,
    /// Ids each producer submitted, in order.
    ids: Vec<Vec<String>>,
    /// Metrics of the pipelines already shut down.
    finished: Vec<MetricsSnapshot>,
    _dir: tempfile::TempDir,
}

impl Sut {
    fn spawn_pipeline(&mut self) {
        let (chain, faults) = (self.chain.clone(), self.faults.clone());
        let factory = move || {
            let sink = FaultySink {
                faults: faults.clone(),
                inner: chain.sink(ChainSinkOptions::unsigned()),
            };
            std::future::ready(Ok::<_, SinkError>(sink))
        };
        let _guard = self.runtime.enter();
        let pipeline = AuditPipeline::builder(factory)
            .max_batch(16)
            .retry(RetryPolicy {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(2),
                max_retries: 0,
            })
            .max_restarts(MAX_RESTARTS)
            .fallback_path(&self.fallback)
            .spawn();
        self.pipeline = Some(pipeline);
    }

    fn pipeline(&self) -> &AuditPipeline {
        self.pipeline.as_ref().unwrap()
    }

    fn event(&mut self, producer: usize) -> AuditEvent {
        let n = self.ids[producer].len();
        let event = AuditEvent::new(
            "sm.event",
            format!("producer:{producer}"),
            serde_json::json!({ "n": n }),
        )
        .unwrap();
        self.ids[producer].push(event.id().to_owned());
        event
    }

    fn totals(&self) -> MetricsSnapshot {
        let mut total = self
            .pipeline
            .as_ref()
            .map(|pipeline| pipeline.metrics().snapshot())
            .unwrap_or_default();
        for done in &self.finished {
            total.submitted += done.submitted;
            total.appended += done.appended;
            total.dead_lettered += done.dead_lettered;
            total.lost += done.lost;
            total.in_flight += done.in_flight;
        }
        total
    }

    fn restart(&mut self) {
        let pipeline = self.pipeline.take().unwrap();
        let report = self
            .runtime
            .block_on(pipeline.shutdown(Duration::from_secs(30)));
        assert!(!report.timed_out, "shutdown timed out: {report:?}");
        assert_eq!(report.metrics.in_flight, 0);
        assert!(report.metrics.is_balanced());
        self.finished.push(report.metrics);
        self.spawn_pipeline();
    }

    fn drain(&self) {
        assert!(
            self.runtime
                .block_on(self.pipeline().drain_pending(Duration::from_secs(30)))
        );
        let totals = self.totals();
        assert_eq!(totals.in_flight, 0);
        assert_eq!(
            self.chain.len() as u64,
            totals.appended,
            "chain length differs from appended"
        );
        let letters = FallbackFile::new(&self.fallback).read_all().unwrap();
        assert_eq!(
            letters.len() as u64,
            totals.dead_lettered,
            "fallback file differs from dead_lettered"
        );
    }
}

struct PipelineMachine;

impl StateMachineTest for PipelineMachine {
    type SystemUnderTest = Sut;
    type Reference = ModelMachine;

    fn init_test(_model: &Model) -> Sut {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut sut = Sut {
            runtime,
            chain: MemoryChain::new(),
            faults: Arc::default(),
            fallback: dir.path().join("fallback.jsonl"),
            pipeline: None,
            ids: vec![Vec::new(); PRODUCERS],
            finished: Vec::new(),
            _dir: dir,
        };
        sut.spawn_pipeline();
        sut
    }

    fn apply(mut sut: Sut, model: &Model, step: Step) -> Sut {
        match step {
            Step::Submit { producer, count } => {
                let queue = sut.pipeline().queue();
                for _ in 0..count {
                    let event = sut.event(producer);
                    assert!(
                        queue.submit(event),
                        "an unbounded running pipeline must queue"
                    );
                }
            }
            Step::SubmitWait { producer } => {
                let queue = sut.pipeline().queue();
                let event = sut.event(producer);
                match sut.runtime.block_on(queue.submit_wait(event.clone())) {
                    Ok(receipt) => {
                        let record = &sut.chain.records()[receipt.seq as usize - 1];
                        assert_eq!(
                            record.event_json,
                            event.canonical_json(),
                            "receipt points at another record"
                        );
                    }
                    Err(SubmitError::DeadLettered { .. }) => {
                        let letters = FallbackFile::new(&sut.fallback).read_all().unwrap();
                        assert!(
                            letters.iter().any(|letter| letter.event_id == event.id()),
                            "dead-lettered but not in the fallback file"
                        );
                    }
                    Err(other) => panic!("submit_wait: {other}"),
                }
            }
            Step::Fault(fault) => sut.faults.lock().unwrap().push_back(fault),
            Step::Drain => sut.drain(),
            Step::Restart => sut.restart(),
        }
        let submitted: usize = model.submitted.iter().sum();
        let ids: usize = sut.ids.iter().map(Vec::len).sum();
        assert_eq!(
            ids, submitted,
            "the model and the system disagree on submissions"
        );
        sut
    }

    fn check_invariants(sut: &Sut, _model: &Model) {
        let snapshot = sut.pipeline().metrics().snapshot();
        assert!(snapshot.is_balanced(), "invariant broken: {snapshot:?}");
        assert_eq!(
            snapshot.lost, 0,
            "nothing may be lost while the fallback file works"
        );
        let totals = sut.totals();
        assert!(
            sut.chain.len() as u64 >= totals.appended,
            "appended counts more than the chain holds"
        );
    }

    fn teardown(mut sut: Sut, _model: Model) {
        let pipeline = sut.pipeline.take().unwrap();
        let report = sut
            .runtime
            .block_on(pipeline.shutdown(Duration::from_secs(30)));
        assert!(!report.timed_out);
        sut.finished.push(report.metrics);
        let totals = sut.totals();
        let submitted: u64 = sut.ids.iter().map(|ids| ids.len() as u64).sum();
        assert_eq!(totals.submitted, submitted);
        assert_eq!((totals.in_flight, totals.lost), (0, 0));
        assert_eq!(totals.appended + totals.dead_lettered, submitted);

        // Where each event ended: position in the chain or in the fallback file.
        let mut in_chain: HashMap<String, usize> = HashMap::new();
        for (index, record) in sut.chain.records().iter().enumerate() {
            let id = record.columns.as_ref().unwrap().id.to_string();
            assert!(
                in_chain.insert(id, index).is_none(),
                "an event is twice in the chain"
            );
        }
        let mut in_file: HashMap<String, usize> = HashMap::new();
        for (index, letter) in FallbackFile::new(&sut.fallback)
            .read_all()
            .unwrap()
            .into_iter()
            .enumerate()
        {
            assert!(
                in_file.insert(letter.event_id, index).is_none(),
                "an event is twice in the fallback file"
            );
        }
        for (producer, ids) in sut.ids.iter().enumerate() {
            let (mut last_chain, mut last_file) = (None, None);
            for id in ids {
                match (in_chain.get(id), in_file.get(id)) {
                    (Some(&index), None) => {
                        assert!(
                            last_chain < Some(index),
                            "producer {producer}: chain order broken at {id}"
                        );
                        last_chain = Some(index);
                    }
                    (None, Some(&index)) => {
                        assert!(
                            last_file < Some(index),
                            "producer {producer}: fallback order broken at {id}"
                        );
                        last_file = Some(index);
                    }
                    (Some(_), Some(_)) => panic!("event {id} is both appended and dead-lettered"),
                    (None, None) => panic!("event {id} of producer {producer} vanished"),
                }
            }
        }
        assert!(sut.chain.verify(Keyring::new()).is_ok());
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn pipeline_matches_its_model(sequential 1..40 => PipelineMachine);
}
