// Command gameday scores calcservers as the AWS GameDay scoreboard and the WorldSkills
// contest checker do: `run` offers load at a constant arrival rate and keeps the score,
// `check` replays the contest checker, `bench` compares caching strategies, `scale`
// measures a fleet behind nginx. See the
// README's "gameday" section.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/unicorn-rentals/unicorn/internal/cli"
)

// Exit codes.
const (
	exitOK          = 0
	exitRuntime     = 1
	exitUsage       = cli.ExitUsage
	exitInterrupted = 130 // as a shell reports SIGINT
)

// env is everything run takes from the operating system.
type env struct {
	ctx      context.Context // ends on SIGINT or SIGTERM
	stdout   io.Writer
	stderr   io.Writer
	terminal bool // stdout is a terminal: redraw one status line instead of printing many
	width    int  // the terminal's columns; 0: unknown
}

const usageText = `Usage: gameday run   -target URL [flags]   offer load, verify every answer, keep the score
       gameday check -target URL [flags]   replay the WorldSkills contest checker
       gameday bench [flags]               compare caching strategies on this machine
       gameday scale [flags]               measure a fleet behind nginx: 1, 2, 4, 8 servers

Run "gameday COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	fd := int(os.Stdout.Fd())
	width, _, _ := term.GetSize(fd)
	code := run(os.Args[1:], env{
		ctx:      ctx,
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		terminal: term.IsTerminal(fd),
		width:    width,
	})
	stop()
	os.Exit(code)
}

// run is gameday's testable main; it returns the process exit code.
func run(args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runLoad(args[1:], e)
	case "check":
		return runCheck(args[1:], e)
	case "bench":
		return runBench(e.ctx, args[1:], e.stdout, e.stderr)
	case "scale":
		return runScale(e.ctx, args[1:], e.stdout, e.stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, usageText)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "gameday: unknown command %q\n%s", args[0], usageText)
	return exitUsage
}
