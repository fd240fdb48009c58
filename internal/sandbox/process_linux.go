package sandbox

import "syscall"

// dieWithParent ends a child (kpoguard, cert-manager) when the test or
// sandbox that started it dies without stopping it.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
