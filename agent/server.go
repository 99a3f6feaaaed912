package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

// routes is the agent's HTTP surface. Twisted's /rpc is a leaf resource:
// /rpc, /rpc/ and /rpc/anything all reach the XML-RPC handler.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	rpc := &rpcHandler{
		methods:  a.builder.methods(),
		maxBody:  a.cfg.Limits.RequestBodyBytes,
		logError: a.logger.Error,
		metrics:  a.metrics,
	}
	if rpc.maxBody <= 0 {
		rpc.maxBody = DefaultRequestBodyBytes
	}
	mux.Handle("/rpc", rpc)
	mux.Handle("/rpc/", rpc)
	mux.Handle("/filecache/", a.cache.Handler(a.log))
	mux.Handle("/metrics", a.metrics.handler())
	mux.Handle("/healthz", a.healthHandler())
	return mux
}

// method is one XML-RPC procedure. An error that is not a *Fault becomes
// Fault 8002 with the error's text.
type method func(r *http.Request, params []any) (any, error)

type rpcHandler struct {
	methods  map[string]method
	maxBody  int64
	logError func(msg string, args ...any)
	metrics  *metrics
	// bodyTimeout bounds reading a request body (bodyReadTimeout if 0).
	bodyTimeout time.Duration
}

// bodyReadTimeout bounds reading one request body.
const bodyReadTimeout = time.Minute

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

// putBuffer keeps ordinary-sized buffers only: one large request must not
// pin a megabyte per pooled buffer.
func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		bufPool.Put(b)
	}
}

func (h *rpcHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed: XML-RPC needs POST", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > h.maxBody {
		w.Header().Set("Connection", "close")
		http.Error(w, fmt.Sprintf("request body larger than %d bytes", h.maxBody), http.StatusRequestEntityTooLarge)
		return
	}
	in := getBuffer()
	defer putBuffer(in)
	// A client trickling its body must not hold the connection for ever;
	// the deadline is lifted once the body is in, because a call (an
	// ensurepresent download) may legitimately run for a long time.
	rc := http.NewResponseController(w)
	timeout := h.bodyTimeout
	if timeout <= 0 {
		timeout = bodyReadTimeout
	}
	rc.SetReadDeadline(time.Now().Add(timeout))
	_, err := in.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		// The rest of the body is not worth waiting for.
		w.Header().Set("Connection", "close")
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("request body larger than %d bytes", h.maxBody), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read request body", http.StatusBadRequest)
		return
	}
	rc.SetReadDeadline(time.Time{})

	out := getBuffer()
	defer putBuffer(out)
	out.Write(h.respond(r, in.Bytes(), out.AvailableBuffer()))

	hdr := w.Header()
	hdr["Content-Type"] = contentTypeXML
	hdr["Content-Length"] = []string{strconv.Itoa(out.Len())}
	w.WriteHeader(http.StatusOK)
	w.Write(out.Bytes())
}

var contentTypeXML = []string{"text/xml; charset=utf-8"}

// respond decodes, dispatches and encodes one call into buf.
func (h *rpcHandler) respond(r *http.Request, body []byte, buf []byte) []byte {
	start := time.Now()
	out, method, fault := h.dispatch(r, body, buf)
	h.metrics.observeCall(method, fault, time.Since(start))
	return out
}

// dispatch answers one call; it also reports the method and whether the
// answer is a fault, for the metrics.
func (h *rpcHandler) dispatch(r *http.Request, body []byte, buf []byte) ([]byte, string, bool) {
	var call *Call
	if c, ok := fastCall(body); ok {
		call = c
	} else {
		var err error
		call, err = DecodeRequest(bytes.NewReader(body))
		if err != nil {
			return AppendFault(buf, Faultf("Can't deserialize input: %v", err)), "", true
		}
	}
	m, ok := h.methods[call.Method]
	if !ok {
		return AppendFault(buf, &Fault{Code: FaultNotFound, String: "procedure " + call.Method + " not found"}), "", true
	}
	result, err := h.call(m, r, call)
	if err != nil {
		var f *Fault
		if !errors.As(err, &f) {
			f = Faultf("%v", err)
		}
		return AppendFault(buf, f), call.Method, true
	}
	if pre, ok := result.(preEncoded); ok {
		return append(buf, pre...), call.Method, false
	}
	out, err := AppendResponse(buf, result)
	if err != nil {
		return AppendFault(buf[:0], Faultf("Can't serialize output: %v", err)), call.Method, true
	}
	return out, call.Method, false
}

// call runs a method; a panic becomes a fault (and a log entry) instead of
// a dropped connection.
func (h *rpcHandler) call(m method, r *http.Request, call *Call) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			h.logError("XML-RPC method panicked", "method", call.Method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			result, err = nil, Faultf("%s: internal error", call.Method)
		}
	}()
	return m(r, call.Params)
}

// preEncoded is a whole methodResponse document a method built itself
// (status() pre-encodes its constant parts).
type preEncoded []byte

// fastCalls are the exact bodies Python's xmlrpc.client (and so
// buildd-manager) sends for the parameterless calls it makes every few
// seconds; recognising them byte for byte skips the XML parser without
// changing what is accepted.
var fastCalls = func() map[string]*Call {
	m := map[string]*Call{}
	for _, name := range []string{"status", "info", "echo", "abort", "clean", "proxy_info"} {
		b, _ := AppendRequest(nil, name)
		m[string(b)] = &Call{Method: name, Params: []any{}}
	}
	return m
}()

func fastCall(body []byte) (*Call, bool) {
	if len(body) > 200 {
		return nil, false
	}
	c, ok := fastCalls[string(body)]
	if !ok {
		return nil, false
	}
	return &Call{Method: c.Method, Params: []any{}}, true
}
