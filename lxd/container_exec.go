package lxd

// Commands in the container: LXD exec with the architecture's
// personality, output streamed to the build log line by line.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/gorilla/websocket"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// Run runs a command as root in the container under the architecture's
// personality, with its output streamed line by line and complete when Run
// returns.
func (c *Container) Run(ctx context.Context, cmd target.Command) (int, error) {
	return c.run(ctx, cmd, runOpts{personality: true})
}

// runOpts are the agent's own exec settings, beyond target.Command.
type runOpts struct {
	personality bool   // prefix linux32/linux64
	uid, gid    uint32 // run as this user (0: root)
}

func (c *Container) run(ctx context.Context, cmd target.Command, o runOpts) (int, error) {
	if len(cmd.Args) == 0 {
		return -1, errors.New("cannot run an empty command")
	}
	env := map[string]string{}
	for _, kv := range cmd.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return -1, fmt.Errorf("cannot run %q: invalid environment entry %q", cmd.Args[0], kv)
		}
		env[k] = v
	}
	argv := cmd.Args
	if o.personality {
		argv = append([]string{personality(c.spec.Arch)}, cmd.Args...)
	}
	stdout, stderr, flush := c.outputs(cmd)
	stdin := cmd.Stdin
	if stdin == nil {
		stdin = bytes.NewReader(nil)
	}
	dataDone := make(chan bool)
	var ctrlMu sync.Mutex
	var ctrl *websocket.Conn
	op, err := c.h.srv.ExecInstance(c.name, api.InstanceExecPost{
		Command:     argv,
		Environment: env,
		WaitForWS:   true,
		Cwd:         cmd.Dir,
		User:        o.uid,
		Group:       o.gid,
	}, &lxdclient.InstanceExecArgs{
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Control: func(conn *websocket.Conn) {
			ctrlMu.Lock()
			ctrl = conn
			ctrlMu.Unlock()
		},
		DataDone: dataDone,
	})
	if err != nil {
		flush()
		return -1, fmt.Errorf("cannot run %q in container %q: %w", cmd.Args[0], c.name, err)
	}
	if err := op.WaitContext(ctx); err != nil {
		if ctx.Err() != nil {
			// Given up: kill the process and take what output there is.
			ctrlMu.Lock()
			if ctrl != nil {
				_ = ctrl.WriteJSON(api.InstanceExecControl{Command: "signal", Signal: 9})
			}
			ctrlMu.Unlock()
			select {
			case <-dataDone:
			case <-time.After(drainTimeout):
			}
			flush()
			return -1, fmt.Errorf("cannot run %q in container %q: %w", cmd.Args[0], c.name, ctx.Err())
		}
		<-dataDone
		flush()
		// LXD turns the statuses 126 and 127 into errors; they are exit
		// statuses like any other (a shell says them too).
		switch {
		case strings.Contains(err.Error(), "Command not found"):
			return 127, nil
		case strings.Contains(err.Error(), "Command not executable"):
			return 126, nil
		}
		return -1, fmt.Errorf("cannot run %q in container %q: %w", cmd.Args[0], c.name, err)
	}
	// The exit status is known, but the output may still be in flight:
	// wait for the data websockets to drain (lxc/exec.go does the same).
	<-dataDone
	flush()
	ret, ok := op.Get().Metadata["return"].(float64)
	if !ok {
		return -1, fmt.Errorf("cannot run %q in container %q: LXD returned no exit status", cmd.Args[0], c.name)
	}
	return int(ret), nil
}

// outputs picks the writers for a command's output. Output for the build log
// (or one writer shared by stdout and stderr) is written in whole lines
// under one lock, so the two streams never interleave within a line.
func (c *Container) outputs(cmd target.Command) (io.Writer, io.Writer, func()) {
	out, errw := cmd.Stdout, cmd.Stderr
	if out == nil {
		out = c.opts.Log
	}
	if errw == nil {
		errw = c.opts.Log
	}
	if out == nil {
		out = io.Discard
	}
	if errw == nil {
		errw = io.Discard
	}
	if out != errw {
		return out, errw, func() {}
	}
	mu := &sync.Mutex{}
	lo, le := &lineWriter{mu: mu, w: out}, &lineWriter{mu: mu, w: errw}
	return lo, le, func() { lo.flush(); le.flush() }
}

// lineWriter forwards whole lines to w under mu; a partial line waits for
// its end (or for flush), up to maxLine bytes.
type lineWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	buf []byte
	err error
}

const maxLine = 64 << 10

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	i := bytes.LastIndexByte(l.buf, '\n')
	if i < 0 && len(l.buf) < maxLine {
		return len(p), nil
	}
	n := i + 1
	if i < 0 {
		n = len(l.buf)
	}
	l.mu.Lock()
	_, err := l.w.Write(l.buf[:n])
	l.mu.Unlock()
	l.buf = append(l.buf[:0], l.buf[n:]...)
	if err != nil && l.err == nil {
		l.err = err
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	if len(l.buf) == 0 {
		return
	}
	l.mu.Lock()
	_, _ = l.w.Write(l.buf)
	l.mu.Unlock()
	l.buf = nil
}
