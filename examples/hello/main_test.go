package main

import (
	"os"
	"os/exec"
	"testing"
)

// TestMain runs main itself when the test re-executes its binary.
func TestMain(m *testing.M) {
	if os.Getenv("HELLO_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHelloTwice runs the program twice in one directory: the first run
// deploys, the second finds the same procedure's result by its nonce.
func TestHelloTwice(t *testing.T) {
	dir := t.TempDir()
	want := "procedure 1: {Service:web Version:v42}, err <nil>; web runs v42\n"
	for run := 1; run <= 2; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "HELLO_RUN_MAIN=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if string(out) != want {
			t.Fatalf("run %d printed %q, want %q", run, out, want)
		}
	}
	if _, err := os.Stat(dir + "/hello-data/wal"); err != nil {
		t.Fatalf("no store in the run's directory: %v", err)
	}
}
