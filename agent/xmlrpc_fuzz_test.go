package agent

import (
	"bytes"
	"testing"

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
