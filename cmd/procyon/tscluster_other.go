//go:build !linux

package main

import "syscall"

// tsSysProcAttr: elsewhere than on Linux, the cluster's Close is what
// ends its processes.
func tsSysProcAttr() *syscall.SysProcAttr { return nil }
