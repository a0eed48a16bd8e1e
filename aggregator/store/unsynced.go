package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// bootIDFile changes at every boot of a Linux machine.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// readBootID returns the current boot's id, or "" when it cannot be read.
func readBootID() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// markerPath is the file that says the state file holds unsynced writes, and of which
// boot.
func (f *fsm) markerPath() string { return f.path + ".unsynced" }

// checkUnsynced runs before the state file is opened. A marker from another boot means
// the machine restarted while the file held writes that were never synced: some may be
// lost, and bbolt cannot tell, so the file is removed and raft rebuilds it from the
// newest snapshot and the log (Open sees the applied index 0). Then the marker is
// written for this boot, synced, before the first unsynced write. A marker that cannot
// be read is an error, and the file is kept.
func (f *fsm) checkUnsynced() error {
	marker := f.markerPath()
	b, err := os.ReadFile(marker)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		// Whether the machine restarted is not known: keep the file, say what is wrong.
		return fmt.Errorf("state marker: %w", err)
	case f.bootID != "" && string(b) == f.bootID:
		// Only the process ended since: the page cache kept every write.
	default:
		f.log.Warn("the state file was not synced before the machine restarted; "+
			"rebuilding it from the newest snapshot and the raft log", "path", f.path)
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove unsynced state: %w", err)
		}
		if err := syncDir(filepath.Dir(f.path)); err != nil {
			return fmt.Errorf("remove unsynced state: %w", err)
		}
	}
	if f.bootID == "" {
		// Without a boot id every commit is synced; no marker is needed.
		return f.markSynced()
	}
	if err := writeSynced(marker, bytes.NewReader([]byte(f.bootID))); err != nil {
		return fmt.Errorf("state marker: %w", err)
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("state marker: %w", err)
	}
	return nil
}

// markSynced removes the marker once the state file is synced and closed.
func (f *fsm) markSynced() error {
	if err := os.Remove(f.markerPath()); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("state marker: %w", err)
	}
	return syncDir(filepath.Dir(f.path))
}
