// Command procyon is the procyon CLI: benchmarks, log tools, the demo and
// the server. Run "procyon help" for the list of verbs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// A command is one verb, possibly two words long ("bench wal"). Flags are
// parsed with the standard flag package, so both -flag and --flag work, as
// the documentation and issues write them.
type command struct {
	path    string // space-separated words, e.g. "wal dump"
	usage   string // arguments after the path, e.g. "DIR"
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what a command writes to; tests substitute buffers.
type env struct {
	stdout io.Writer
	stderr io.Writer
}

var commands []command

func register(c command) { commands = append(commands, c) }

// errUsage makes main print the command's usage and exit 2.
var errUsage = errors.New("usage")

// exitError carries a specific exit code (e.g. wal verify's 1 on corruption).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := lookup(args[1:]); c != nil {
				fmt.Fprintf(e.stdout, "usage: procyon %s %s\n\n%s\n", c.path, c.usage, c.summary)
				return 0
			}
		}
		printHelp(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c := lookup(args)
	if c == nil {
		fmt.Fprintf(e.stderr, "procyon: unknown command %q\n\n", strings.Join(args, " "))
		printHelp(e.stderr)
		return 2
	}
	rest := args[len(strings.Fields(c.path)):]
	err := c.run(ctx, e, rest)
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "usage: procyon %s %s\n", c.path, c.usage)
		return 2
	case errors.As(err, &ee):
		fmt.Fprintf(e.stderr, "procyon %s: %v\n", c.path, ee.err)
		return ee.code
	default:
		fmt.Fprintf(e.stderr, "procyon %s: %v\n", c.path, err)
		return 1
	}
}

// lookup finds the command with the longest path that prefixes args.
func lookup(args []string) *command {
	var best *command
	bestLen := 0
	for i := range commands {
		words := strings.Fields(commands[i].path)
		if len(words) <= len(args) && slices.Equal(words, args[:len(words)]) && len(words) > bestLen {
			best, bestLen = &commands[i], len(words)
		}
	}
	return best
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "procyon: crash-safe multi-step operations for Go control planes")
	fmt.Fprintln(w, "\nusage: procyon <command> [flags] [args]\n\ncommands:")
	sorted := slices.Clone(commands)
	slices.SortFunc(sorted, func(a, b command) int { return strings.Compare(a.path, b.path) })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-28s %s\n", c.path+" "+c.usage, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"procyon help <command>\" or \"procyon <command> -h\" for a command's flags.")
}

// parseFlags parses args for a command that takes flags only: any
// argument left over is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errUsage
	}
	return nil
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its usage to the command's stderr.
func newFlagSet(e *env, path, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("procyon "+path, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: procyon %s %s\n\nflags:\n", path, usage)
		fs.PrintDefaults()
	}
	return fs
}
