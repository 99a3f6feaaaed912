package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/google/go-cmp/cmp"
)

// FuzzDecodeRequest: decoding never panics, whatever is accepted
// re-encodes to a document that decodes to the same call, and the server's
// byte-for-byte fast path agrees with the parser. The corpus in
// testdata/fuzz/FuzzDecodeRequest starts from real buildd-manager requests
// (written by Python's xmlrpc.client).
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(rpcCallDoc("status", "")))
	f.Add([]byte(rpcCallDoc("echo", rpcParam("<base64>\naGkK\n</base64>")+rpcParam("<nil/>")+rpcParam(rpcNest(3)))))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeRequest(bytes.NewReader(data))
		if fc, ok := fastCall(data); ok {
			if err != nil {
				t.Fatalf("fast path accepts what the parser refuses (%v)", err)
			}
			if !cmp.Equal(fc, c) {
				t.Fatalf("fast path %#v != parser %#v", fc, c)
			}
		}
		if err != nil {
			return
		}
		doc, err := AppendRequest(nil, c.Method, c.Params...)
		if err != nil {
			t.Fatalf("cannot re-encode a decoded call: %v", err)
		}
		c2, err := DecodeRequest(bytes.NewReader(doc))
		if err != nil {
			t.Fatalf("re-encoded call does not decode: %v\n%s", err, doc)
		}
		if diff := cmp.Diff(c, c2); diff != "" {
			t.Fatalf("round trip changed the call (-first +second):\n%s", diff)
		}
		// Responses go through the same encoder.
		resp, err := AppendResponse(nil, c.Params)
		if err != nil {
			t.Fatalf("cannot encode params as a response: %v", err)
		}
		v, err := DecodeResponse(bytes.NewReader(resp))
		if err != nil {
			t.Fatalf("encoded response does not decode: %v", err)
		}
		if diff := cmp.Diff(any(c.Params), v); diff != "" {
			t.Fatalf("response round trip (-params +decoded):\n%s", diff)
		}
	})
}

// FuzzRPC sends arbitrary bodies through the XML-RPC handler of a builder
// (with fakes for the cache and log, and a manager that finishes at once):
// whatever arrives, the answer is a well-formed response or fault, and the
// builder never panics. Seeds: the FuzzDecodeRequest corpus plus builds
// the fake manager accepts.
func FuzzRPC(f *testing.F) {
	const tag = "fuzz"
	builders.Register(tag, func(req builders.Request) (builders.Manager, error) {
		if _, ok := req.Args["series"].(string); !ok {
			return nil, &builders.ArgError{Arg: "series", Reason: "missing"}
		}
		return &funcManager{run: func(ctx context.Context, env *builders.Env) builders.Result {
			fmt.Fprintln(env.Log, "fuzz build")
			env.AddWaitingFile("out", strings.NewReader("x"))
			return builders.Result{Status: builders.BuildOK}
		}}, nil
	})
	defer builders.Unregister(tag)
	chroot := sumOf([]byte("chroot tarball"))
	for _, seed := range fuzzCorpus(f, "FuzzDecodeRequest") {
		f.Add(seed)
	}
	for _, params := range [][]any{
		{"B-1", tag, chroot, map[string]any{}, map[string]any{"series": "noble"}},
		{"B-1", tag, chroot, map[string]any{"a": chroot}, map[string]any{"series": "noble", "build_url": "http://u:p@x/"}},
		{"B-1", tag, chroot, map[string]any{}, map[string]any{}},
	} {
		doc, _ := AppendRequest(nil, "build", params...)
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := DecodeRequest(bytes.NewReader(data)); err == nil && c.Method == "build" && len(c.Params) > 1 {
			// Never start the real managers registered in this binary.
			if name, ok := c.Params[1].(string); ok && name != tag {
				if _, real := builders.Lookup(name); real {
					return
				}
			}
		}
		tb := newTestBuilder(t, time.Second)
		h := &rpcHandler{methods: tb.methods(), maxBody: 1 << 20, logError: func(string, ...any) {}}
		for range 2 { // twice: the second call meets the state the first left
			out := h.respond(httptestRequest(data), data, nil)
			if _, err := DecodeResponse(bytes.NewReader(out)); err != nil {
				var fault *Fault
				if !errors.As(err, &fault) {
					t.Fatalf("handler answered something that is not XML-RPC: %v\n%s", err, out)
				}
			}
		}
	})
}

// fuzzCorpus reads the inputs of a fuzz target's corpus directory.
func fuzzCorpus(f *testing.F, name string) [][]byte {
	dir := filepath.Join("testdata", "fuzz", name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 3)
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			continue
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			f.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, []byte(s))
	}
	return out
}
