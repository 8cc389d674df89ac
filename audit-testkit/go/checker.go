// Command checker verifies deferred-audit's transparency-log artefacts with
// Go's reference packages golang.org/x/mod/sumdb/note and sumdb/tlog: an
// independent implementation check of FORMAT.md section 8, run by
// audit-core/tests/go_reference.rs and audit-cli/tests/transparency.rs
// through audit_testkit::go_checker.
//
// Usage (GOPATH mode, offline):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run checker.go DIR
//
// DIR holds, as written by the Rust test:
//
//	log.vkey          the log's verifier key
//	witness.vkey      a witness's cosignature (type 0x04) verifier key
//	checkpoint.note   the signed and cosigned tree checkpoint
//	leaves.txt        base64 of each leaf's data E, one per line, in order
//	stored.txt        base64 of every stored hash, in stored-hash index order
//	*.tlog-proof      inclusion proofs (c2sp.org/tlog-proof@v1)
//	*.consistency     consistency proofs (old <M>, hashes, empty line, note),
//	                  each with <name>.old-root holding base64 of the old root
//
// Without witness.vkey (artefacts of the deferred-audit CLI), notes carry
// the log's signature only, stored.txt is optional, inclusion proofs may
// carry the leaf in an "extra" line (which must equal leaves.txt's), and a
// consistency proof without <name>.old-root is checked against the old
// root tlog computes from leaves.txt.
//
// Files whose name starts with "bad-" must be rejected. The checker prints
// one line per check and exits non-zero on the first failure.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func read(dir, name string) []byte {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		fail("%v", err)
	}
	return data
}

// cosigVerifier verifies C2SP tlog-cosignature/v1 Ed25519 cosignatures
// (key type 0x04), which x/mod's note package does not know.
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	m := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	return ed25519.Verify(v.key, m, sig[8:])
}

func newCosigVerifier(vkey string) note.Verifier {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		fail("witness vkey %q", vkey)
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) != 33 || key[0] != 0x04 {
		fail("witness vkey %q: not a 0x04 Ed25519 key", vkey)
	}
	h := sha256.New()
	h.Write([]byte(parts[0] + "\n"))
	h.Write(key)
	sum := h.Sum(nil)
	hash := binary.BigEndian.Uint32(sum[:4])
	if fmt.Sprintf("%08x", hash) != parts[1] {
		fail("witness vkey %q: key hash should be %08x", vkey, hash)
	}
	return &cosigVerifier{name: parts[0], hash: hash, key: ed25519.PublicKey(key[1:])}
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint verifies a note with x/mod's note.Open and parses its body.
func openCheckpoint(msg []byte, verifiers note.Verifiers, wantSigs int) (checkpoint, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return checkpoint{}, fmt.Errorf("note.Open: %v", err)
	}
	if len(n.Sigs) != wantSigs {
		return checkpoint{}, fmt.Errorf("note has %d verified signatures, want %d", len(n.Sigs), wantSigs)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return checkpoint{}, fmt.Errorf("checkpoint body is not three lines: %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint root %q: %v", lines[2], err)
	}
	if n.Sigs[0].Name != lines[0] {
		return checkpoint{}, fmt.Errorf("first signature by %q, not the origin %q", n.Sigs[0].Name, lines[0])
	}
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

// splitProof splits "<header lines>\n<hash lines>\n\n<note>".
func splitProof(data []byte, headerLines int) ([]string, []tlog.Hash, []byte, error) {
	i := bytes.Index(data, []byte("\n\n"))
	if i < 0 {
		return nil, nil, nil, fmt.Errorf("no empty line")
	}
	lines := strings.Split(string(data[:i]), "\n")
	if len(lines) < headerLines {
		return nil, nil, nil, fmt.Errorf("too few lines")
	}
	var hashes []tlog.Hash
	for _, line := range lines[headerLines:] {
		h, err := tlog.ParseHash(line)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("hash %q: %v", line, err)
		}
		hashes = append(hashes, h)
	}
	return lines[:headerLines], hashes, data[i+2:], nil
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: checker DIR")
	}
	dir := os.Args[1]

	logV, err := note.NewVerifier(strings.TrimSpace(string(read(dir, "log.vkey"))))
	if err != nil {
		fail("note.NewVerifier(log.vkey): %v", err)
	}
	both := note.VerifierList(logV)
	wantSigs = 1
	if _, err := os.Stat(filepath.Join(dir, "witness.vkey")); err == nil {
		witnessV := newCosigVerifier(string(read(dir, "witness.vkey")))
		both = note.VerifierList(logV, witnessV)
		wantSigs = 2
	}

	cp, err := openCheckpoint(read(dir, "checkpoint.note"), both, wantSigs)
	if err != nil {
		fail("checkpoint.note: %v", err)
	}
	fmt.Printf("ok checkpoint.note: %d signature(s) verify (origin %s, size %d)\n", wantSigs, cp.origin, cp.size)

	// The stored hashes follow tlog's layout: tlog recomputes every record's
	// stored hashes and the tree hash from them.
	var leaves [][]byte
	for _, line := range strings.Split(strings.TrimSpace(string(read(dir, "leaves.txt"))), "\n") {
		leaf, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			fail("leaves.txt: %v", err)
		}
		leaves = append(leaves, leaf)
	}
	var stored []tlog.Hash
	_, statErr := os.Stat(filepath.Join(dir, "stored.txt"))
	haveStored := statErr == nil
	if haveStored {
		for _, line := range strings.Split(strings.TrimSpace(string(read(dir, "stored.txt"))), "\n") {
			h, err := tlog.ParseHash(line)
			if err != nil {
				fail("stored.txt: %v", err)
			}
			stored = append(stored, h)
		}
	}
	if haveStored && int64(len(stored)) != tlog.StoredHashCount(int64(len(leaves))) {
		fail("stored.txt has %d hashes, tlog.StoredHashCount(%d) = %d", len(stored), len(leaves), tlog.StoredHashCount(int64(len(leaves))))
	}
	var rebuilt []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			out[i] = rebuilt[x]
		}
		return out, nil
	})
	for n, leaf := range leaves {
		hashes, err := tlog.StoredHashes(int64(n), leaf, reader)
		if err != nil {
			fail("tlog.StoredHashes(%d): %v", n, err)
		}
		rebuilt = append(rebuilt, hashes...)
	}
	for i := range stored {
		if haveStored && stored[i] != rebuilt[i] {
			fail("stored hash %d differs from tlog's", i)
		}
	}
	root, err := tlog.TreeHash(int64(len(leaves)), reader)
	if err != nil || root != cp.root || int64(len(leaves)) != cp.size {
		fail("tlog.TreeHash(%d) = %v, checkpoint root %v size %d", len(leaves), root, cp.root, cp.size)
	}
	if haveStored {
		fmt.Printf("ok stored.txt: %d stored hashes equal tlog's, root equals the checkpoint's\n", len(stored))
	} else {
		fmt.Printf("ok leaves.txt: tlog's root of %d leaves equals the checkpoint's\n", len(leaves))
	}

	names, _ := filepath.Glob(filepath.Join(dir, "*.tlog-proof"))
	more, _ := filepath.Glob(filepath.Join(dir, "*.consistency"))
	names = append(names, more...)
	sort.Strings(names)
	checked := 0
	for _, path := range names {
		name := filepath.Base(path)
		data := read(dir, name)
		var err error
		if strings.HasSuffix(name, ".tlog-proof") {
			err = checkInclusion(data, leaves, both)
		} else {
			rootFile := strings.TrimSuffix(name, ".consistency") + ".old-root"
			var oldRoot tlog.Hash
			if _, serr := os.Stat(filepath.Join(dir, rootFile)); serr == nil {
				var perr error
				oldRoot, perr = tlog.ParseHash(strings.TrimSpace(string(read(dir, rootFile))))
				if perr != nil {
					fail("%s: %v", rootFile, perr)
				}
			} else {
				oldRoot = rootFromLeaves(data, reader)
			}
			err = checkConsistency(data, oldRoot, both)
		}
		bad := strings.HasPrefix(name, "bad-")
		switch {
		case bad && err == nil:
			fail("%s: accepted, must be rejected", name)
		case bad:
			fmt.Printf("ok %s: rejected (%v)\n", name, err)
		case err != nil:
			fail("%s: %v", name, err)
		default:
			fmt.Printf("ok %s\n", name)
		}
		checked++
	}
	fmt.Printf("checked %d proof files\n", checked)
}

// wantSigs is the number of signatures every note must carry.
var wantSigs = 2

// rootFromLeaves is tlog's tree hash at the old size of a consistency proof.
func rootFromLeaves(data []byte, reader tlog.HashReader) tlog.Hash {
	line := string(data[:bytes.IndexByte(data, '\n')+1])
	old, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "old ")), 10, 64)
	if err != nil {
		return tlog.Hash{}
	}
	root, err := tlog.TreeHash(old, reader)
	if err != nil {
		return tlog.Hash{}
	}
	return root
}

func checkInclusion(data []byte, leaves [][]byte, verifiers note.Verifiers) error {
	headerLines := 2
	if bytes.HasPrefix(data, []byte("c2sp.org/tlog-proof@v1\nextra ")) {
		headerLines = 3
	}
	header, proof, msg, err := splitProof(data, headerLines)
	if err != nil {
		return err
	}
	indexLine := header[headerLines-1]
	if header[0] != "c2sp.org/tlog-proof@v1" || !strings.HasPrefix(indexLine, "index ") {
		return fmt.Errorf("header %q", header)
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(indexLine, "index "), 10, 64)
	if err != nil || index < 0 || index >= int64(len(leaves)) {
		return fmt.Errorf("index %q", indexLine)
	}
	if headerLines == 3 {
		extra, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(header[1], "extra "))
		if err != nil {
			return fmt.Errorf("extra: %v", err)
		}
		if !bytes.Equal(extra, leaves[index]) {
			return fmt.Errorf("extra is not leaf %d", index)
		}
	}
	cp, err := openCheckpoint(msg, verifiers, wantSigs)
	if err != nil {
		return err
	}
	return tlog.CheckRecord(tlog.RecordProof(proof), cp.size, cp.root, index, tlog.RecordHash(leaves[index]))
}

func checkConsistency(data []byte, oldRoot tlog.Hash, verifiers note.Verifiers) error {
	header, proof, msg, err := splitProof(data, 1)
	if err != nil {
		return err
	}
	old, err := strconv.ParseInt(strings.TrimPrefix(header[0], "old "), 10, 64)
	if err != nil || !strings.HasPrefix(header[0], "old ") {
		return fmt.Errorf("header %q", header[0])
	}
	cp, err := openCheckpoint(msg, verifiers, wantSigs)
	if err != nil {
		return err
	}
	return tlog.CheckTree(tlog.TreeProof(proof), cp.size, cp.root, old, oldRoot)
}
