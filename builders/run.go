package builders

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// CtimeLayout is Python's time.ctime() format, which launchpad-buildd writes
// before every command: "[Thu Apr  3 15:13:01 2025]".
const CtimeLayout = "Mon Jan _2 15:04:05 2006"

// now is a seam for tests.
var now = time.Now

// Run writes launchpad-buildd's "[ctime]" and "RUN: argv" lines to log, then
// runs cmd in t. The RUN line quotes arguments like Python's shlex.quote, so
// logs read the same as the reference's.
func Run(ctx context.Context, t target.Target, log io.Writer, cmd target.Command) (int, error) {
	fmt.Fprintf(log, "[%s]\nRUN: %s\n", now().Format(CtimeLayout), QuoteArgs(cmd.Args))
	return t.Run(ctx, cmd)
}

// QuoteArgs joins argv the way launchpad-buildd logs it: the first element
// as is, the rest shell-quoted with shlex.quote rules.
func QuoteArgs(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	parts := make([]string, 0, len(argv))
	parts = append(parts, argv[0])
	for _, a := range argv[1:] {
		parts = append(parts, ShellQuote(a))
	}
	if len(argv) == 1 {
		// The reference's line ends with a space when there are no arguments.
		return argv[0] + " "
	}
	return strings.Join(parts, " ")
}

// ShellQuote is Python's shlex.quote: the empty string becomes two single
// quotes, safe characters
// [A-Za-z0-9_@%+=:,./-] unquoted, anything else single-quoted.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}
