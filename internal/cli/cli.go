// Package cli is what the project's commands (calcserver, gameday) share about their
// command lines: flag sets that report errors instead of exiting, and the exit code of
// a bad command line.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// ExitUsage is the exit code of a bad command line, as flag's own ExitOnError uses.
const ExitUsage = 2

// NewFlagSet returns a flag set that writes to stderr and returns its errors instead of
// exiting; -h prints usage, then the flags.
func NewFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args into fs and refuses positional arguments. When ok is false the
// command exits with code: 0 after -h, ExitUsage after an error, which fs has reported.
func Parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return ExitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return ExitUsage, false
	}
	return 0, true
}
