package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// tsClusterOptions configure a tsCluster. Root is required; every other
// field has a default, written in its comment.
type tsClusterOptions struct {
	// Root is the shared root directory of the table store.
	Root string
	// Servers is the number of region servers, named rs1..rsN. Default 3.
	Servers int
	// Lease is the master's -lease: a region server silent for longer is
	// dead. Default 1s.
	Lease time.Duration
	// LogDir, if set, receives each process's stderr in <name>.log
	// (appended across restarts). Default: stderr is kept in memory only
	// (the last 64 KiB per process name, see Tail).
	LogDir string
	// Exe is the procyon binary to run. Default os.Executable() (in
	// tests the test binary, acting as the CLI: see barrierExecEnv).
	Exe string
	// ReadyTimeout bounds how long a process may take to print its ready
	// line. Default 60s.
	ReadyTimeout time.Duration
}

func (o *tsClusterOptions) ensureDefaults() error {
	if o.Root == "" {
		return errors.New("tscluster: Root is required")
	}
	if o.Servers == 0 {
		o.Servers = 3
	}
	if o.Lease == 0 {
		o.Lease = time.Second
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Exe = exe
	}
	return nil
}

// tsCluster runs a table store as OS processes of the procyon binary on
// loopback: a master on a fixed port (so that region servers and clients
// find it again after it restarts) and region servers rs1..rsN, all on one
// root directory. It kills processes with SIGKILL and starts them again,
// keeps the tail of each one's stderr for failure reports, and never
// leaves a process behind: Close kills every one it started (and on Linux
// each child is killed too if this process dies first).
type tsCluster struct {
	opts       tsClusterOptions
	masterAddr string

	mu struct {
		sync.Mutex
		procs map[string]*tsProc     // the current process of each name
		tails map[string]*tailWriter // each name's stderr, across restarts
		kills map[string]int         // SIGKILLs by role ("master", "regionserver")
		// unexpected lists processes that exited without being killed or
		// stopped.
		unexpected []string
	}
}

// tsProc is one process of the cluster.
type tsProc struct {
	name  string
	role  string // "master" or "regionserver"
	cmd   *exec.Cmd
	ready readyLine
	done  chan struct{} // closed once the process has exited; then err is set
	err   error

	logf *os.File // its log file, if any: closed once it has exited

	ending bool // guarded by tsCluster.mu: we killed or stopped it
}

const masterName = "master"

// startTSCluster starts the master and the region servers and waits until
// each has printed its ready line.
func startTSCluster(ctx context.Context, opts tsClusterOptions) (*tsCluster, error) {
	if err := opts.ensureDefaults(); err != nil {
		return nil, err
	}
	if opts.LogDir != "" {
		if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &tsCluster{opts: opts, masterAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	c.mu.procs = map[string]*tsProc{}
	c.mu.tails = map[string]*tailWriter{}
	c.mu.kills = map[string]int{}
	if _, err := c.Start(ctx, masterName); err != nil {
		c.Close()
		return nil, err
	}
	for _, name := range c.ServerNames() {
		if _, err := c.Start(ctx, name); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// MasterAddr is the master's address (the same across its restarts).
func (c *tsCluster) MasterAddr() string { return c.masterAddr }

// ServerNames returns the region servers' names, rs1..rsN.
func (c *tsCluster) ServerNames() []string {
	names := make([]string, c.opts.Servers)
	for i := range names {
		names[i] = "rs" + strconv.Itoa(i+1)
	}
	return names
}

// Proc returns the current process of name (nil if none runs).
func (c *tsCluster) Proc(name string) *tsProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.procs[name]
}

// Kills returns how many processes of role were SIGKILLed.
func (c *tsCluster) Kills(role string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.kills[role]
}

// Unexpected describes the processes that exited by themselves (a crash
// that no kill caused), with the tail of their stderr.
func (c *tsCluster) Unexpected() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.mu.unexpected)
}

// args returns the command line of process name.
func (c *tsCluster) args(name string) (role string, args []string) {
	root := c.opts.Root
	if name == masterName {
		return "master", []string{"tablestore", "master", "-root", root, "-addr", c.masterAddr, "-lease", c.opts.Lease.String()}
	}
	return "regionserver", []string{"tablestore", "regionserver", "-root", root, "-name", name, "-master", c.masterAddr}
}

// Start starts process name (the master, or a region server rs<n>) and
// waits for its ready line. One of that name must not be running.
func (c *tsCluster) Start(ctx context.Context, name string) (*tsProc, error) {
	role, args := c.args(name)
	c.mu.Lock()
	if p := c.mu.procs[name]; p != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("tscluster: %s is running (pid %d)", name, p.cmd.Process.Pid)
	}
	tail := c.mu.tails[name]
	if tail == nil {
		tail = &tailWriter{max: 64 << 10}
		c.mu.tails[name] = tail
	}
	c.mu.Unlock()
	var stderr io.Writer = tail
	var logf *os.File
	if c.opts.LogDir != "" {
		f, err := os.OpenFile(filepath.Join(c.opts.LogDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		logf, stderr = f, io.MultiWriter(tail, f)
	}
	p, readyc, err := startProc(c.opts.Exe, name, role, args, stderr)
	if err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, err
	}
	p.logf = logf
	c.mu.Lock()
	c.mu.procs[name] = p
	c.mu.Unlock()
	go c.watch(p, tail)
	timer := time.NewTimer(c.opts.ReadyTimeout)
	defer timer.Stop()
	select {
	case p.ready = <-readyc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("tscluster: %s (pid %d) exited before it was ready: %v\n%s", name, p.cmd.Process.Pid, p.err, tail.String())
	case <-timer.C:
		c.Kill(name)
		return nil, fmt.Errorf("tscluster: %s (pid %d) not ready after %v\n%s", name, p.cmd.Process.Pid, c.opts.ReadyTimeout, tail.String())
	case <-ctx.Done():
		c.Kill(name)
		return nil, ctx.Err()
	}
}

// startProc starts one process with its stdout on a pipe of ours: the
// first ready line is sent on the returned channel, other lines go to
// stderr's record.
func startProc(exe, name, role string, args []string, stderr io.Writer) (*tsProc, <-chan readyLine, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = w, stderr
	cmd.SysProcAttr = tsSysProcAttr()
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("tscluster: start %s: %w", name, err)
	}
	fmt.Fprintf(stderr, "--- %s pid %d started: %v\n", name, cmd.Process.Pid, args)
	p := &tsProc{name: name, role: role, cmd: cmd, done: make(chan struct{})}
	readyc := make(chan readyLine, 1)
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		sent := false
		for sc.Scan() {
			var rl readyLine
			if !sent && json.Unmarshal(sc.Bytes(), &rl) == nil && rl.Event == "ready" {
				readyc <- rl
				sent = true
				continue
			}
			fmt.Fprintf(stderr, "stdout: %s\n", sc.Bytes())
		}
	}()
	return p, readyc, nil
}

// watch waits for p to exit and records an exit nobody asked for.
func (c *tsCluster) watch(p *tsProc, tail *tailWriter) {
	err := p.cmd.Wait()
	fmt.Fprintf(tail, "--- %s pid %d exited: %v\n", p.name, p.cmd.Process.Pid, err)
	if p.logf != nil {
		fmt.Fprintf(p.logf, "--- %s pid %d exited: %v\n", p.name, p.cmd.Process.Pid, err)
		p.logf.Close()
	}
	c.mu.Lock()
	p.err = err
	if c.mu.procs[p.name] == p {
		delete(c.mu.procs, p.name)
	}
	if !p.ending {
		c.mu.unexpected = append(c.mu.unexpected, fmt.Sprintf("%s (pid %d) exited by itself: %v\n%s", p.name, p.cmd.Process.Pid, err, tail.String()))
	}
	c.mu.Unlock()
	close(p.done)
}

// Kill sends SIGKILL to process name and waits until it has exited; it
// returns the process killed (nil and an error if none ran).
func (c *tsCluster) Kill(name string) (*tsProc, error) {
	c.mu.Lock()
	p := c.mu.procs[name]
	if p == nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("tscluster: no %s runs", name)
	}
	p.ending = true
	c.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return p, fmt.Errorf("tscluster: kill %s: %w", name, err)
	}
	<-p.done
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return p, fmt.Errorf("tscluster: %s (pid %d) had exited before the SIGKILL: %v", name, p.cmd.Process.Pid, p.err)
	}
	c.mu.Lock()
	c.mu.kills[p.role]++
	c.mu.Unlock()
	return p, nil
}

// Stop ends every process gracefully (SIGTERM; SIGKILL after 10 s), the
// master first, and returns the errors of those that did not exit 0.
func (c *tsCluster) Stop() error {
	var errs []error
	for _, name := range append([]string{masterName}, c.ServerNames()...) {
		c.mu.Lock()
		p := c.mu.procs[name]
		if p != nil {
			p.ending = true
		}
		c.mu.Unlock()
		if p == nil {
			continue
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if p.err != nil {
			errs = append(errs, fmt.Errorf("%s (pid %d) stopped with %v\n%s", name, p.cmd.Process.Pid, p.err, c.Tail(name)))
		}
	}
	return errors.Join(errs...)
}

// Close SIGKILLs every process still running and waits for them. It is
// safe to call at any time, more than once.
func (c *tsCluster) Close() {
	c.mu.Lock()
	procs := make([]*tsProc, 0, len(c.mu.procs))
	for _, p := range c.mu.procs {
		p.ending = true
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Tail returns the end of process name's stderr, across its restarts.
func (c *tsCluster) Tail(name string) string {
	c.mu.Lock()
	t := c.mu.tails[name]
	c.mu.Unlock()
	if t == nil {
		return ""
	}
	return t.String()
}

// Tails returns the ends of every process's stderr, for a failure report.
func (c *tsCluster) Tails() string {
	var s string
	for _, name := range append([]string{masterName}, c.ServerNames()...) {
		s += fmt.Sprintf("===== %s stderr (tail) =====\n%s\n", name, c.Tail(name))
	}
	return s
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	mu  sync.Mutex
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
