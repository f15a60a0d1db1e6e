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
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// A command is one verb, possibly two words long ("bench wal"). Its flags
// are defined on a standard flag.FlagSet and handed to cobra, which parses
// them (with run's normalization, both -flag and --flag work).
type command struct {
	path    string // space-separated words, e.g. "wal dump"
	usage   string // arguments after the path, e.g. "DIR"
	summary string
	args    int // exact number of positional arguments (default 0)
	// define adds the command's flags to fs and returns the function that
	// runs the command once they are parsed.
	define func(fs *flag.FlagSet) runFunc
}

// runFunc runs a command with its flags parsed; args are its positional
// arguments.
type runFunc func(ctx context.Context, e *env, args []string) error

// env is what a command writes to; tests substitute buffers.
type env struct {
	stdout io.Writer
	stderr io.Writer
}

var commands []command

func register(c command) { commands = append(commands, c) }

// groupSummaries are the one-line helps of the command groups.
var groupSummaries = map[string]string{
	"barrier":    "globally-barriered procedures across member processes on etcd",
	"proc":       "procedures on a running server (procyon serve): list, show, wait, submit, abort, bypass, ack",
	"bench":      "benchmarks of the log, the store, the engine, remote dispatch and barriers (see BENCHMARKS.md)",
	"tablestore": "the table store's processes (master, region server)",
	"wal":        "write-ahead log tools: dump, verify, repair",
}

const rootHelp = `procyon: crash-safe multi-step operations for Go control planes.

Long flags take one dash or two: -concurrency 1 and --concurrency 1 are the same.

Exit codes: 0 success; 1 failure; 2 usage error (an unknown command, an
unknown flag, a missing or extra argument, a flag value out of range).
Some commands document more (verify, repair, wal verify: see their help).`

// usageError is a mistake in the command line: run prints it with a
// pointer to the command's help and exits 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}

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

// run executes the command line args and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	root := newRoot(e)
	root.SetArgs(normalizeArgs(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "%s: %v\nRun '%s --help' for usage.\n", cmd.CommandPath(), ue.err, cmd.CommandPath())
		return 2
	case errors.As(err, &ee):
		fmt.Fprintf(e.stderr, "%s: %v\n", cmd.CommandPath(), ee.err)
		return ee.code
	default:
		fmt.Fprintf(e.stderr, "%s: %v\n", cmd.CommandPath(), err)
		return 1
	}
}

// newRoot builds the command tree from the registered commands, with
// fresh flag values, writing to e.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "procyon",
		Short:         "crash-safe multi-step operations for Go control planes",
		Long:          rootHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	makeGroup(root, e)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(flagError)
	for _, c := range commands {
		words := strings.Fields(c.path)
		parent := root
		for _, w := range words[:len(words)-1] {
			parent = groupOf(parent, w, e)
		}
		parent.AddCommand(leaf(c, words[len(words)-1], e))
	}
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}

// flagError makes a flag parsing error a usage error. pflag reads an
// unknown single-dash word as a cluster of shorthands; say which word it was.
func flagError(_ *cobra.Command, err error) error {
	msg := err.Error()
	if _, word, ok := strings.Cut(msg, "' in "); ok && strings.HasPrefix(msg, "unknown shorthand flag") {
		err = fmt.Errorf("unknown flag: %s", word)
	}
	return &usageError{err: err}
}

// groupOf returns parent's command group named name, adding it if needed.
func groupOf(parent *cobra.Command, name string, e *env) *cobra.Command {
	for _, c := range parent.Commands() {
		if c.Name() == name {
			return c
		}
	}
	g := &cobra.Command{Use: name, Short: groupSummaries[name]}
	makeGroup(g, e)
	parent.AddCommand(g)
	return g
}

// makeGroup makes g a command group: without a subcommand it prints its
// help to stderr and exits 2; an unknown subcommand exits 2.
func makeGroup(g *cobra.Command, e *env) {
	g.SuggestionsMinimumDistance = 2
	g.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return &usageError{err: errors.New(msg)}
	}
	g.RunE = func(cmd *cobra.Command, _ []string) error {
		cmd.SetOut(e.stderr)
		cmd.Help()
		return usagef("missing command")
	}
}

// leaf is the cobra command for c, named name.
func leaf(c command, name string, e *env) *cobra.Command {
	fs := flag.NewFlagSet(c.path, flag.ContinueOnError)
	runner := c.define(fs)
	cmd := &cobra.Command{
		Use:   strings.TrimSpace(name + " " + c.usage),
		Short: c.summary,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != c.args {
				return usagef("want %d argument(s), got %d (usage: %s)", c.args, len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runner(cmd.Context(), e, args)
		},
	}
	cmd.Flags().AddGoFlagSet(fs)
	return cmd
}

// normalizeArgs turns a single-dash long flag (-concurrency, -json=false)
// into its double-dash form, which is what cobra parses, for every name
// that is a long flag somewhere in the tree. Arguments after "--" are left
// alone, and so is anything else that starts with a dash (a value such as
// -1, a shorthand such as -h).
func normalizeArgs(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if len(f.Name) > 1 {
				long[f.Name] = true
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, _, _ := strings.Cut(a, "=")
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && long[name[1:]] {
			a = "-" + a
		}
		out = append(out, a)
	}
	return out
}
