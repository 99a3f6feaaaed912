package agent

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// pythonGolden holds what Python's xmlrpc.client.dumps(..., allow_none=True)
// writes for the same values (generated with CPython 3.11; see the values
// in TestEncodeGolden). launchpad-buildd's responses are exactly these.
var pythonGolden = map[string]string{
	"idle":     "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n<member>\n<name>builder_status</name>\n<value><string>BuilderStatus.IDLE</string></value>\n</member>\n<member>\n<name>builder_version</name>\n<value><string>0.1.0-dev</string></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n",
	"building": "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n<member>\n<name>builder_status</name>\n<value><string>BuilderStatus.BUILDING</string></value>\n</member>\n<member>\n<name>builder_version</name>\n<value><string>0.1.0-dev</string></value>\n</member>\n<member>\n<name>build_id</name>\n<value><string>SNAPBUILD-1</string></value>\n</member>\n<member>\n<name>logtail</name>\n<value><base64>\naGkK\n</base64></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n",
	"waiting":  "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n<member>\n<name>builder_status</name>\n<value><string>BuilderStatus.WAITING</string></value>\n</member>\n<member>\n<name>builder_version</name>\n<value><string>0.1.0-dev</string></value>\n</member>\n<member>\n<name>build_status</name>\n<value><string>BuildStatus.OK</string></value>\n</member>\n<member>\n<name>build_id</name>\n<value><string>SNAPBUILD-1</string></value>\n</member>\n<member>\n<name>filemap</name>\n<value><struct>\n<member>\n<name>a.snap</name>\n<value><string>da39a3ee5e6b4b0d3255bfef95601890afd80709</string></value>\n</member>\n</struct></value>\n</member>\n<member>\n<name>dependencies</name>\n<value><string></string></value>\n</member>\n<member>\n<name>revision_id</name>\n<value><string>abc</string></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n",
	"ensure":   "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n<value><boolean>1</boolean></value>\n<value><string>Cache</string></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n",
	"info":     "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n<value><string>1.0</string></value>\n<value><string>amd64</string></value>\n<value><array><data>\n<value><string>snap</string></value>\n<value><string>ci</string></value>\n</data></array></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n",
	"scalars":  "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n<value><nil/></value><value><boolean>1</boolean></value>\n<value><boolean>0</boolean></value>\n<value><int>0</int></value>\n<value><int>-5</int></value>\n<value><int>2147483647</int></value>\n<value><double>1.0</double></value>\n<value><double>0.1</double></value>\n<value><double>1e+16</double></value>\n<value><double>1.5e-07</double></value>\n<value><double>1000000.0</double></value>\n<value><double>-0.0</double></value>\n<value><double>123456789.125</double></value>\n<value><string>a&amp;b&lt;c&gt;d'\"</string></value>\n<value><string>\u00fcn\u00ef</string></value>\n<value><base64>\n</base64></value>\n<value><base64>\neHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4\neHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA==\n</base64></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n",
	"datetime": "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><dateTime.iso8601>20250403T15:13:01</dateTime.iso8601></value>\n</param>\n</params>\n</methodResponse>\n",
	"nested":   "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n<member>\n<name>a</name>\n<value><array><data>\n<value><int>1</int></value>\n<value><struct>\n<member>\n<name>b</name>\n<value><array><data>\n</data></array></value>\n</member>\n</struct></value>\n</data></array></value>\n</member>\n<member>\n<name>c</name>\n<value><struct>\n</struct></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n",
	"fault":    "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n<value><int>8002</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value><string>error &lt;&amp;&gt;</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n",
	"request":  "<?xml version='1.0'?>\n<methodCall>\n<methodName>build</methodName>\n<params>\n<param>\n<value><string>SNAPBUILD-1</string></value>\n</param>\n<param>\n<value><string>snap</string></value>\n</param>\n<param>\n<value><string>abc</string></value>\n</param>\n<param>\n<value><struct>\n<member>\n<name>f</name>\n<value><string>s</string></value>\n</member>\n</struct></value>\n</param>\n<param>\n<value><struct>\n<member>\n<name>series</name>\n<value><string>noble</string></value>\n</member>\n<member>\n<name>archives</name>\n<value><array><data>\n<value><string>deb x</string></value>\n</data></array></value>\n</member>\n<member>\n<name>n</name>\n<value><nil/></value></member>\n<member>\n<name>b</name>\n<value><base64>\neXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5\neXl5\n</base64></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodCall>\n",
}

func TestEncodeGolden(t *testing.T) {
	sha := "da39a3ee5e6b4b0d3255bfef95601890afd80709"
	tests := []struct {
		name string
		v    any
	}{
		{"idle", Struct{{"builder_status", "BuilderStatus.IDLE"}, {"builder_version", "0.1.0-dev"}}},
		{"building", Struct{{"builder_status", "BuilderStatus.BUILDING"}, {"builder_version", "0.1.0-dev"},
			{"build_id", "SNAPBUILD-1"}, {"logtail", []byte("hi\n")}}},
		{"waiting", Struct{{"builder_status", "BuilderStatus.WAITING"}, {"builder_version", "0.1.0-dev"},
			{"build_status", "BuildStatus.OK"}, {"build_id", "SNAPBUILD-1"},
			{"filemap", Struct{{"a.snap", sha}}}, {"dependencies", ""}, {"revision_id", "abc"}}},
		{"ensure", []any{true, "Cache"}},
		{"info", []any{"1.0", "amd64", []string{"snap", "ci"}}},
		{"scalars", []any{nil, true, false, int64(0), -5, int64(2147483647), 1.0, 0.1, 1e16, 1.5e-7, 1e6,
			math.Copysign(0, -1), 123456789.125, `a&b<c>d'"`, "ünï", []byte{}, bytes.Repeat([]byte("x"), 100)}},
		{"datetime", time.Date(2025, 4, 3, 15, 13, 1, 0, time.UTC)},
		{"nested", map[string]any{"a": []any{1, map[string]any{"b": []any{}}}, "c": map[string]any{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendResponse(nil, tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(pythonGolden[tt.name], string(got)); diff != "" {
				t.Errorf("response differs from Python's (-python +ours):\n%s", diff)
			}
		})
	}
	t.Run("fault", func(t *testing.T) {
		got := AppendFault(nil, &Fault{Code: 8002, String: "error <&>"})
		if diff := cmp.Diff(pythonGolden["fault"], string(got)); diff != "" {
			t.Errorf("fault differs from Python's (-python +ours):\n%s", diff)
		}
	})
	t.Run("request", func(t *testing.T) {
		got, err := AppendRequest(nil, "build", "SNAPBUILD-1", "snap", "abc", Struct{{"f", "s"}},
			Struct{{"series", "noble"}, {"archives", []any{"deb x"}}, {"n", nil}, {"b", bytes.Repeat([]byte("y"), 60)}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(pythonGolden["request"], string(got)); diff != "" {
			t.Errorf("request differs from Python's (-python +ours):\n%s", diff)
		}
	})
}

// Managers may report status extras in ordinary Go types.
func TestEncodeGoTypes(t *testing.T) {
	type name string
	n := 5
	v := map[string]any{
		"ints":   []any{int8(-1), uint16(2), uint64(3), int32(4), &n},
		"float":  float32(0.5),
		"named":  name("x"),
		"jobs":   []map[string]string{{"a": "b"}},
		"nested": map[string][]int{"k": {1, 2}},
		"nilptr": (*int)(nil),
		"nilsl":  []string(nil),
		"arr":    [2]bool{true, false},
	}
	doc, err := AppendResponse(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeResponse(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"ints":   []any{int64(-1), int64(2), int64(3), int64(4), int64(5)},
		"float":  0.5,
		"named":  "x",
		"jobs":   []any{map[string]any{"a": "b"}},
		"nested": map[string]any{"k": []any{int64(1), int64(2)}},
		"nilptr": nil,
		"nilsl":  []any{},
		"arr":    []any{true, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, v := range []any{math.NaN(), math.Inf(1), struct{}{}, []any{make(chan int)},
		map[string]any{"x": uint64(math.MaxUint64)}, map[int]string{1: "x"}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := AppendResponse(nil, v); err == nil {
			t.Errorf("AppendResponse(%#v) succeeded, want an error", v)
		}
	}
	deep := any("x")
	for range MaxDepth + 2 {
		deep = []any{deep}
	}
	if _, err := AppendResponse(nil, deep); err == nil {
		t.Error("AppendResponse of a too deep value succeeded")
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a&b", "a&amp;b"},
		{"<x>", "&lt;x&gt;"},
		{"a\r\nb\tc", "a&#13;\nb\tc"},
		{"nul\x00bell\x07", "nul\uFFFDbell\uFFFD"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"ok é 日本", "ok é 日本"},
		{"\uFFFE", "\uFFFD"},
	}
	for _, tt := range tests {
		if got := string(appendEscaped(nil, tt.in)); got != tt.want {
			t.Errorf("appendEscaped(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPyFloat(t *testing.T) {
	tests := []struct {
		f    float64
		want string
	}{
		{0, "0.0"}, {1, "1.0"}, {-2.5, "-2.5"}, {0.1, "0.1"}, {1e-4, "0.0001"}, {1e-5, "1e-05"},
		{1e15, "1000000000000000.0"}, {1e16, "1e+16"}, {1.5e300, "1.5e+300"}, {123.456, "123.456"},
	}
	for _, tt := range tests {
		if got := string(appendPyFloat(nil, tt.f)); got != tt.want {
			t.Errorf("appendPyFloat(%v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func rpcCallDoc(method, params string) string {
	return "<?xml version='1.0'?>\n<methodCall>\n<methodName>" + method + "</methodName>\n<params>\n" + params + "</params>\n</methodCall>\n"
}

func rpcParam(v string) string { return "<param>\n<value>" + v + "</value>\n</param>\n" }

func TestDecodeRequestTypes(t *testing.T) {
	when := time.Date(2025, 4, 3, 15, 13, 1, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  any
	}{
		{"string", "<string>a &amp; b</string>", "a & b"},
		{"untyped", "plain text", "plain text"},
		{"untyped empty", "", ""},
		{"untyped spaces", "  ", "  "},
		{"empty string", "<string></string>", ""},
		{"string self-closed", "<string/>", ""},
		{"string whitespace kept", "<string> a </string>", " a "},
		{"string around", "\n  <string>x</string>\n  ", "x"},
		{"cdata", "<string><![CDATA[<b>]]></string>", "<b>"},
		{"char refs", "<string>&#13;&#x41;&lt;&gt;&quot;&apos;</string>", "\rA<>\"'"},
		{"crlf normalised", "<string>a\r\nb</string>", "a\nb"},
		{"int", "<int>42</int>", int64(42)},
		{"i4", "<i4>-7</i4>", int64(-7)},
		{"i8", "<i8>9223372036854775807</i8>", int64(math.MaxInt64)},
		{"int plus", "<int>+3</int>", int64(3)},
		{"int spaces", "<int> 3 </int>", int64(3)},
		{"boolean 1", "<boolean>1</boolean>", true},
		{"boolean 0", "<boolean>0</boolean>", false},
		{"double", "<double>1.5</double>", 1.5},
		{"double exp", "<double>-1e+16</double>", -1e16},
		{"double int", "<double>3</double>", 3.0},
		{"base64", "<base64>aGkK</base64>", []byte("hi\n")},
		{"base64 wrapped", "<base64>\neHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4\neHh4eA==\n</base64>",
			bytes.Repeat([]byte("x"), 61)},
		{"base64 crlf and spaces", "<base64>\r\n aG\tk K \r\n</base64>", []byte("hi\n")},
		{"base64 empty", "<base64>\n</base64>", []byte{}},
		{"datetime compact", "<dateTime.iso8601>20250403T15:13:01</dateTime.iso8601>", when},
		{"datetime dashed", "<dateTime.iso8601>2025-04-03T15:13:01</dateTime.iso8601>", when},
		{"datetime zone", "<dateTime.iso8601>2025-04-03T17:13:01+02:00</dateTime.iso8601>", when},
		{"datetime Z", "<dateTime.iso8601>20250403T15:13:01Z</dateTime.iso8601>", when},
		{"nil", "<nil/>", nil},
		{"nil pair", "<nil></nil>", nil},
		{"ex:nil", `<ex:nil xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions"/>`, nil},
		{"array", "<array><data>\n<value><int>1</int></value>\n<value>x</value><value><nil/></value></data></array>", []any{int64(1), "x", nil}},
		{"array empty", "<array><data/></array>", []any{}},
		{"struct", "<struct>\n<member>\n<name>a</name>\n<value><int>1</int></value>\n</member>\n<member><name>b</name><value>s</value></member></struct>",
			map[string]any{"a": int64(1), "b": "s"}},
		{"struct empty", "<struct></struct>", map[string]any{}},
		{"struct duplicate keeps last", "<struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct>",
			map[string]any{"a": "2"}},
		{"struct empty name", "<struct><member><name></name><value>1</value></member></struct>", map[string]any{"": "1"}},
		{"nested", "<struct><member><name>filemap</name><value><struct><member><name>x.dsc</name><value><string>abc</string></value></member></struct></value></member>" +
			"<member><name>archives</name><value><array><data><value><string>deb http://x/ noble main</string></value></data></array></value></member></struct>",
			map[string]any{"filemap": map[string]any{"x.dsc": "abc"}, "archives": []any{"deb http://x/ noble main"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeRequest(strings.NewReader(rpcCallDoc("echo", rpcParam(tt.value))))
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if c.Method != "echo" || len(c.Params) != 1 {
				t.Fatalf("got %#v", c)
			}
			if diff := cmp.Diff(tt.want, c.Params[0]); diff != "" {
				t.Errorf("value (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRequestShapes(t *testing.T) {
	tests := []struct {
		name, doc string
		method    string
		params    []any
	}{
		{"python status", rpcCallDoc("status", ""), "status", []any{}},
		{"no params element", "<methodCall><methodName>info</methodName></methodCall>", "info", []any{}},
		{"empty params", "<methodCall><methodName>info</methodName><params/></methodCall>", "info", []any{}},
		{"no declaration", "<methodCall><methodName>echo</methodName><params><param><value>a</value></param><param><value><int>1</int></value></param></params></methodCall>",
			"echo", []any{"a", int64(1)}},
		{"utf-8 declaration", `<?xml version="1.0" encoding="UTF-8"?><methodCall><methodName>a.b_c</methodName></methodCall>`, "a.b_c", []any{}},
		{"comments and whitespace", "<!-- c --><methodCall> <!-- c --> <methodName>x</methodName> <params> </params> </methodCall> <!-- trailing -->\n\n", "x", []any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeRequest(strings.NewReader(tt.doc))
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if c.Method != tt.method {
				t.Errorf("method = %q, want %q", c.Method, tt.method)
			}
			if diff := cmp.Diff(tt.params, c.Params); diff != "" {
				t.Errorf("params (-want +got):\n%s", diff)
			}
		})
	}
}

func rpcNest(n int) string {
	return strings.Repeat("<array><data><value>", n) + "x" + strings.Repeat("</value></data></array>", n)
}

func TestDecodeRequestMalformed(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "unexpected EOF"},
		{"not xml", "hello", "unexpected text"},
		{"truncated", "<methodCall><methodName>x</methodName>", "unexpected EOF"},
		{"wrong root", "<methodResponse><params/></methodResponse>", "expected <methodCall>"},
		{"trailing garbage", rpcCallDoc("status", "") + "garbage", "trailing text"},
		{"trailing element", rpcCallDoc("status", "") + "<x/>", "trailing content"},
		{"two roots", rpcCallDoc("status", "") + rpcCallDoc("status", ""), "trailing content"},
		{"doctype", "<!DOCTYPE methodCall [<!ENTITY x \"y\">]>" + rpcCallDoc("status", ""), "DOCTYPE"},
		{"entity", rpcCallDoc("echo", rpcParam("<string>&x;</string>")), "invalid character entity"},
		{"external entity", rpcCallDoc("echo", rpcParam("<string>&xxe;</string>")), "entity"},
		{"bad char ref", rpcCallDoc("echo", rpcParam("<string>&#0;</string>")), "character"},
		{"processing instruction", rpcCallDoc("status", "<?php x?>"), "processing instruction"},
		{"late xml declaration", "<!-- x --><?xml version='1.0'?>" + rpcCallDoc("status", ""), ""},
		{"latin1", "<?xml version='1.0' encoding='ISO-8859-1'?><methodCall><methodName>x</methodName></methodCall>", "ISO-8859-1"},
		{"invalid utf8", rpcCallDoc("echo", rpcParam("<string>\xff</string>")), "UTF-8"},
		{"mismatched tags", "<methodCall><methodName>x</methodCall>", "element <methodName> closed by </methodCall>"},
		{"unknown element in value", rpcCallDoc("echo", rpcParam("<foo>1</foo>")), "unknown element <foo>"},
		{"unknown element in params", rpcCallDoc("echo", "<foo/>"), "unexpected element <foo>"},
		{"unknown element in member", rpcCallDoc("echo", rpcParam("<struct><member><name>a</name><value>1</value><x/></member></struct>")), "unexpected element <x>"},
		{"member without value", rpcCallDoc("echo", rpcParam("<struct><member><name>a</name></member></struct>")), "expected <value>"},
		{"member without name", rpcCallDoc("echo", rpcParam("<struct><member><value>1</value></member></struct>")), "expected <name>"},
		{"array without data", rpcCallDoc("echo", rpcParam("<array><value>1</value></array>")), "expected <data>"},
		{"element in string", rpcCallDoc("echo", rpcParam("<string><b>x</b></string>")), "unexpected element <b>"},
		{"text and element", rpcCallDoc("echo", rpcParam("x<string>y</string>")), "mixed"},
		{"two typed", rpcCallDoc("echo", rpcParam("<int>1</int><int>2</int>")), "unexpected element <int>"},
		{"param without value", rpcCallDoc("echo", "<param></param>"), "expected <value>"},
		{"text in params", rpcCallDoc("echo", "text"), "unexpected text"},
		{"attribute", "<methodCall id='1'><methodName>x</methodName></methodCall>", "unexpected attribute"},
		{"empty method", "<methodCall><methodName></methodName></methodCall>", "invalid method name"},
		{"method with space", "<methodCall><methodName>a b</methodName></methodCall>", "invalid method name"},
		{"no method name", "<methodCall><params/></methodCall>", "expected <methodName>"},
		{"bad int", rpcCallDoc("echo", rpcParam("<int>1.5</int>")), "bad <int>"},
		{"int overflow", rpcCallDoc("echo", rpcParam("<i8>9223372036854775808</i8>")), "bad <i8>"},
		{"i4 overflow", rpcCallDoc("echo", rpcParam("<i4>2147483648</i4>")), "out of range"},
		{"empty int", rpcCallDoc("echo", rpcParam("<int></int>")), "bad <int>"},
		{"bad boolean", rpcCallDoc("echo", rpcParam("<boolean>true</boolean>")), "bad <boolean>"},
		{"bad double", rpcCallDoc("echo", rpcParam("<double>abc</double>")), "bad <double>"},
		{"nan", rpcCallDoc("echo", rpcParam("<double>NaN</double>")), "bad <double>"},
		{"inf", rpcCallDoc("echo", rpcParam("<double>1e999</double>")), "bad <double>"},
		{"hex double", rpcCallDoc("echo", rpcParam("<double>0x1p3</double>")), "bad <double>"},
		{"bad base64", rpcCallDoc("echo", rpcParam("<base64>!!!!</base64>")), "bad <base64>"},
		{"base64 no padding", rpcCallDoc("echo", rpcParam("<base64>aGk</base64>")), "bad <base64>"},
		{"bad datetime", rpcCallDoc("echo", rpcParam("<dateTime.iso8601>yesterday</dateTime.iso8601>")), "bad <dateTime.iso8601>"},
		{"nil with content", rpcCallDoc("echo", rpcParam("<nil>x</nil>")), "<nil/> must be empty"},
		{"too deep", rpcCallDoc("echo", rpcParam(rpcNest(MaxDepth+2))), "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeRequest(strings.NewReader(tt.doc))
			if err == nil {
				t.Fatalf("DecodeRequest succeeded: %#v", c)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeDepthLimitBoundary(t *testing.T) {
	if _, err := DecodeRequest(strings.NewReader(rpcCallDoc("echo", rpcParam(rpcNest(MaxDepth))))); err != nil {
		t.Errorf("nesting of %d refused: %v", MaxDepth, err)
	}
}

func TestRoundTrip(t *testing.T) {
	params := []any{"s", "", int64(-1), int64(1) << 40, true, false, 2.5, []byte("bin\x00ary"), nil,
		time.Date(2025, 4, 3, 15, 13, 1, 0, time.UTC), "a\r\nb & <c>",
		[]any{[]any{}, map[string]any{}}, map[string]any{"k": map[string]any{"n": []any{nil, "x"}}}}
	doc, err := AppendRequest(nil, "echo", params...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeRequest(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("DecodeRequest: %v\n%s", err, doc)
	}
	if diff := cmp.Diff(params, c.Params); diff != "" {
		t.Errorf("round trip (-sent +decoded):\n%s", diff)
	}
	resp, err := AppendResponse(nil, params)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeResponse(bytes.NewReader(resp))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(any(params), got); diff != "" {
		t.Errorf("response round trip (-sent +decoded):\n%s", diff)
	}
}

func TestDecodeResponse(t *testing.T) {
	_, err := DecodeResponse(strings.NewReader(pythonGolden["fault"]))
	var f *Fault
	if !errors.As(err, &f) || f.Code != 8002 || f.String != "error <&>" {
		t.Errorf("fault: got %v", err)
	}
	v, err := DecodeResponse(strings.NewReader(pythonGolden["ensure"]))
	if err != nil || !cmp.Equal(v, []any{true, "Cache"}) {
		t.Errorf("ensure: got %#v, %v", v, err)
	}
	for _, bad := range []string{
		"<methodResponse></methodResponse>",
		"<methodResponse><params></params></methodResponse>",
		"<methodResponse><params><param><value>1</value></param><param><value>2</value></param></params></methodResponse>",
		"<methodResponse><fault><value><int>1</int></value></fault></methodResponse>",
		"<methodResponse><fault><value><struct></struct></value></fault></methodResponse>",
		"<methodResponse><x/></methodResponse>",
	} {
		if _, err := DecodeResponse(strings.NewReader(bad)); err == nil || errors.As(err, &f) {
			t.Errorf("DecodeResponse(%q) = %v, want a decoding error", bad, err)
		}
	}
}
