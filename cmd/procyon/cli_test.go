package main

import (
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// commandPaths lists every visible command of the tree, root first, as the
// words after "procyon".
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden {
			return
		}
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clip(path), sub.Name()))
		}
	}
	walk(newRoot(&env{stdout: io.Discard, stderr: io.Discard}), nil)
	if len(paths) < 20 {
		t.Fatalf("only %d commands in the tree: %v", len(paths), paths)
	}
	return paths
}

// TestEveryCommandAnswersHelp: every command and command group, including
// ones added later, prints its usage for -h and --help and exits 0.
func TestEveryCommandAnswersHelp(t *testing.T) {
	for _, path := range commandPaths(t) {
		for _, h := range []string{"-h", "--help"} {
			args := append(slices.Clip(path), h)
			code, out, errOut := runCLI(t, args...)
			usage := "procyon " + strings.Join(path, " ")
			if code != 0 || errOut != "" || !strings.Contains(out, "Usage:\n  "+strings.TrimSpace(usage)) {
				t.Errorf("%v: exit %d, stderr %q, stdout:\n%s", args, code, errOut, out)
			}
		}
	}
}

// TestUsageErrors: a mistake in the command line exits 2 with a message
// naming it and a pointer to the help, and prints nothing on stdout.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "procyon: missing command"},
		{[]string{"frobnicate"}, `procyon: unknown command "frobnicate" for "procyon"`},
		{[]string{"wal"}, "procyon wal: missing command"},
		{[]string{"wal", "vrify"}, `procyon wal: unknown command "vrify" for "procyon wal"; did you mean verify?`},
		{[]string{"bench", "wal", "--nosuchflag"}, "procyon bench wal: unknown flag: --nosuchflag"},
		{[]string{"bench", "wal", "-nosuchflag"}, "procyon bench wal: unknown flag: -nosuchflag"},
		{[]string{"bench", "wal", "-writers", "many"}, `procyon bench wal: invalid argument "many" for "--writers" flag`},
		{[]string{"wal", "verify"}, "procyon wal verify: want 1 argument(s), got 0 (usage: procyon wal verify DIR [-json] [-need-from N] [flags])"},
		{[]string{"backup", "a", "b", "c"}, "procyon backup: want 2 argument(s), got 3"},
		{[]string{"demo", "-regions", "1"}, "procyon demo: -regions must be 2 to 99, got 1"},
		{[]string{"tablestore", "master"}, "procyon tablestore master: -root is required"},
	} {
		code, out, errOut := runCLI(t, c.args...)
		if code != 2 || !strings.HasPrefix(errOut, c.want) && !strings.Contains(errOut, "\n"+c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", c.args, code, errOut, c.want)
		}
		if !strings.HasSuffix(errOut, " --help' for usage.\n") || out != "" {
			t.Errorf("%v: stdout %q, stderr %q; want no stdout and a pointer to the help", c.args, out, errOut)
		}
	}
}

// TestCompletion: each shell gets its completion script.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "__start_procyon",
		"zsh":  "#compdef procyon",
		"fish": "complete -c procyon",
	} {
		code, out, errOut := runCLI(t, "completion", shell)
		if code != 0 || errOut != "" || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes without %q", shell, code, errOut, len(out), want)
		}
	}
	// Cobra's hidden completion entry point, which the scripts call,
	// completes command names.
	code, out, _ := runCLI(t, "__complete", "wal", "")
	if code != 0 || !strings.Contains(out, "verify") || !strings.Contains(out, "dump") {
		t.Errorf("__complete wal: exit %d\n%s", code, out)
	}
}

// TestSingleAndDoubleDashFlags: long flags work with one dash and with
// two, the way the docs write them and the way cobra does.
func TestSingleAndDoubleDashFlags(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "bench")
	for _, dash := range []string{"-", "--"} {
		args := []string{"bench", "procedures", dash + "concurrency", "1", dash + "dir", parent,
			dash + "duration=100ms", dash + "baseline=false", dash + "json"}
		code, out, errOut := runCLI(t, args...)
		var res struct {
			Concurrency int `json:"concurrency"`
		}
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res.Concurrency != 1 {
			t.Errorf("%v: exit %d, %v, concurrency %d\n%s%s", args, code, err, res.Concurrency, out, errOut)
		}
	}
}

func TestNormalizeArgs(t *testing.T) {
	root := newRoot(&env{stdout: io.Discard, stderr: io.Discard})
	got := normalizeArgs(root, []string{"wal", "verify", "-json=false", "-need-from", "-1", "-h", "-", "--yes", "--", "-json"})
	want := []string{"wal", "verify", "--json=false", "--need-from", "-1", "-h", "-", "--yes", "--", "-json"}
	if !slices.Equal(got, want) {
		t.Fatalf("normalizeArgs = %q, want %q", got, want)
	}
}
