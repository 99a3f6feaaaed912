package builders

import (
	"context"
	"sort"
	"sync"
)

// Sweeper removes what builds of one kind may leave behind when the agent
// is killed in the middle of one (kill -9, a crash, a power cut): the agent
// calls every registered sweeper once at start, before it accepts a
// build(), after it has removed <build_home>/build-* and the host work
// directories itself. stateDir and buildHome are the configured
// directories. At that point no build runs, so anything a sweeper finds
// that is its own is stale. An error is logged; it does not stop the agent.
type Sweeper func(ctx context.Context, stateDir, buildHome string) error

var (
	sweepersMu sync.RWMutex
	sweepers   = map[string]Sweeper{}
)

// RegisterSweeper adds a start-up sweeper under name (a manager or backend
// name, for the log). It panics on a duplicate name, like Register.
func RegisterSweeper(name string, f Sweeper) {
	sweepersMu.Lock()
	defer sweepersMu.Unlock()
	if _, dup := sweepers[name]; dup {
		panic("builders: duplicate sweeper " + name)
	}
	sweepers[name] = f
}

// UnregisterSweeper removes a sweeper; tests use it to clean up.
func UnregisterSweeper(name string) {
	sweepersMu.Lock()
	defer sweepersMu.Unlock()
	delete(sweepers, name)
}

// NamedSweeper is one registered sweeper.
type NamedSweeper struct {
	Name  string
	Sweep Sweeper
}

// Sweepers lists the registered sweepers, by name.
func Sweepers() []NamedSweeper {
	sweepersMu.RLock()
	defer sweepersMu.RUnlock()
	out := make([]NamedSweeper, 0, len(sweepers))
	for name, f := range sweepers {
		out = append(out, NamedSweeper{name, f})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
