//go:build e2etest

// The e2etest build manager exists only in binaries built with
// `-tags e2etest` (tests/e2e_agent_test.go builds one): it lets the
// end-to-end tests drive the real daemon through a whole build without a
// container. The shipped binary has no fake manager.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
)

// E2ETestTag is the manager tag tests name in build().
const E2ETestTag = "e2etest"

var e2eResults = map[string]builders.BuildStatus{
	"ok":          builders.BuildOK,
	"packagefail": builders.BuildPackageFail,
	"depfail":     builders.BuildDepFail,
	"givenback":   builders.BuildGivenBack,
	"chrootfail":  builders.BuildChrootFail,
	"builderfail": builders.BuildBuilderFail,
}

func init() {
	builders.Register(E2ETestTag, newE2EManager)
}

// e2eManager's arguments:
//
//	result        "ok" (default), "packagefail", "depfail", "givenback",
//	              "chrootfail", "builderfail", or "panic"
//	sleep         seconds to run (int or double, default 0, at most 3600)
//	output        text stored as the result file "output.txt"
//	ignore_cancel true: keep sleeping after abort (tests the watchdog)
type e2eManager struct {
	req          builders.Request
	result       string
	sleep        time.Duration
	output       string
	ignoreCancel bool
}

func newE2EManager(req builders.Request) (builders.Manager, error) {
	m := &e2eManager{req: req, result: "ok", output: "e2e output\n"}
	if v, ok := req.Args["result"]; ok {
		s, isStr := v.(string)
		if _, known := e2eResults[s]; !isStr || !known && s != "panic" {
			return nil, &builders.ArgError{Arg: "result", Reason: fmt.Sprintf("must be one of ok, packagefail, depfail, givenback, chrootfail, builderfail, panic; got %v", v)}
		}
		m.result = s
	}
	if v, ok := req.Args["sleep"]; ok {
		var secs float64
		switch x := v.(type) {
		case int64:
			secs = float64(x)
		case float64:
			secs = x
		default:
			return nil, &builders.ArgError{Arg: "sleep", Reason: fmt.Sprintf("must be a number of seconds, got %T", v)}
		}
		if secs < 0 || secs > 3600 {
			return nil, &builders.ArgError{Arg: "sleep", Reason: "must be between 0 and 3600 seconds"}
		}
		m.sleep = time.Duration(secs * float64(time.Second))
	}
	if v, ok := req.Args["output"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return nil, &builders.ArgError{Arg: "output", Reason: "must be a string"}
		}
		m.output = s
	}
	if v, ok := req.Args["ignore_cancel"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, &builders.ArgError{Arg: "ignore_cancel", Reason: "must be a boolean"}
		}
		m.ignoreCancel = b
	}
	return m, nil
}

func (m *e2eManager) ProxyInfo() (bool, string) { return false, "" }

func (m *e2eManager) Run(ctx context.Context, env *builders.Env) builders.Result {
	fmt.Fprintf(env.Log, "e2etest build %s starting\n", m.req.BuildID)
	names := make([]string, 0, len(m.req.Files))
	for name := range m.req.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fi, err := os.Stat(m.req.Files[name])
		if err != nil {
			fmt.Fprintf(env.Log, "input %s missing: %v\n", name, err)
			return builders.Result{Status: builders.BuildBuilderFail}
		}
		fmt.Fprintf(env.Log, "input %s: %d bytes\n", name, fi.Size())
	}
	if m.sleep > 0 {
		fmt.Fprintf(env.Log, "sleeping %s\n", m.sleep)
		timer := time.NewTimer(m.sleep)
		defer timer.Stop()
		done := ctx.Done()
		if m.ignoreCancel {
			done = nil
		}
		select {
		case <-timer.C:
		case <-done:
			fmt.Fprintln(env.Log, "cancelled")
			return builders.Result{Status: builders.BuildPackageFail}
		}
	}
	if m.result == "panic" {
		panic("e2etest manager asked to panic")
	}
	if _, err := env.AddWaitingFile("output.txt", bytes.NewBufferString(m.output)); err != nil {
		fmt.Fprintf(env.Log, "cannot store output.txt: %v\n", err)
		return builders.Result{Status: builders.BuildBuilderFail}
	}
	// A second, binary result with a CI-style name.
	blob := bytes.Repeat([]byte{0, 1, 2, 253, 254, 255}, 20000)
	if _, err := env.AddWaitingFile("build:0/artifact.bin", bytes.NewReader(blob)); err != nil {
		fmt.Fprintf(env.Log, "cannot store artifact.bin: %v\n", err)
		return builders.Result{Status: builders.BuildBuilderFail}
	}
	env.SetStatus("revision_id", "e2e0123456789abcdef0123456789abcdef01234")
	fmt.Fprintf(env.Log, "e2etest build %s done: %s\n", m.req.BuildID, m.result)
	res := builders.Result{Status: e2eResults[m.result]}
	if res.Status == builders.BuildDepFail {
		res.Dependencies = "libe2e-dev (>= 1.0)"
	}
	return res
}
