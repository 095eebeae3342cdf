package e2e

import "syscall"

// procAttr kills the child when the test process dies, so a test killed
// by its timeout leaves no etcd or apiserver behind.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
