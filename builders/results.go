package builders

import "errors"

// ErrResultTooLarge is wrapped by Env.AddWaitingFile's error when a result
// goes over [limits] result_file_bytes or result_total_bytes. The agent
// fails such a build as PACKAGEFAIL (whatever the manager returns): the
// build made it, and retrying on another builder would not help.
var ErrResultTooLarge = errors.New("result over the builder's size limit")
