//go:build unix

package datadir

import (
	"errors"
	"os"
	"syscall"
)

var errLocked = errors.New("locked")

// lockFD takes an exclusive flock on f without waiting. flock locks
// belong to the open file, so a second Open in the same process conflicts
// too, and the kernel drops the lock when the process dies.
func lockFD(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}
