package main

import "syscall"

// tsSysProcAttr makes the kernel SIGKILL a cluster process if this
// process dies first, so that no table store process outlives its demo or
// test, even when that is killed itself.
func tsSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
