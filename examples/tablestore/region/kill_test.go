package region

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
)

const holderEnv = "PROCYON_REGION_HOLDER"

// TestKilledHolderReleasesRegion is the fencing of a region server that
// was declared dead: while its process lives, the region cannot be opened
// elsewhere; once it is killed (SIGKILL, no cleanup), it can, with every
// row it acknowledged.
func TestKilledHolderReleasesRegion(t *testing.T) {
	if os.Getenv(holderEnv) != "" {
		t.Skip("running as the helper")
	}
	dir := t.TempDir() + "/data/t1/r1"
	cmd := exec.Command(os.Args[0], "-test.run=^TestRegionHolderProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), holderEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // held open: the helper waits on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "holding\n" {
		cmd.Process.Kill()
		t.Fatalf("helper said %q, %v", line, err)
	}
	if _, err := Open(dir, Options{Logger: quiet()}); !errors.Is(err, ErrLocked) {
		cmd.Process.Kill()
		t.Fatalf("Open while another process holds the region: %v, want ErrLocked", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	r, err := Open(dir, Options{Logger: quiet()})
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	defer r.Close()
	if v, ok, err := r.Get([]byte("acked")); err != nil || !ok || string(v) != "by the helper" {
		t.Fatalf("the killed holder's acknowledged row: %q, %v, %v", v, ok, err)
	}
}

// TestRegionHolderProcess is the helper of TestKilledHolderReleasesRegion:
// it opens the region, puts a row, says so and waits to be killed.
func TestRegionHolderProcess(t *testing.T) {
	dir := os.Getenv(holderEnv)
	if dir == "" {
		t.Skip("only run as a helper process")
	}
	r, err := Open(dir, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Put(context.Background(), Row{Key: []byte("acked"), Value: []byte("by the helper")}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin)
	r.Close()
}
