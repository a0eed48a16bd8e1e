package nft

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAuditIDs reads login uid and session from a /proc-like tree: set values are
// returned, unset ones (4294967295), a vanished process and a pid now running another
// program give nothing.
func TestAuditIDs(t *testing.T) {
	dir := t.TempDir()
	write := func(pid, name, v string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pid, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("100", "loginuid", "1000")
	write("100", "sessionid", "7")
	write("100", "comm", "nft")
	write("200", "loginuid", unsetID)
	write("200", "sessionid", unsetID)
	write("200", "comm", "nft")
	write("300", "loginuid", "1000")
	write("300", "sessionid", "7")
	write("300", "comm", "bash")
	old := procDir
	procDir = dir
	defer func() { procDir = old }()
	for _, c := range []struct {
		pid      uint32
		uid, ses string
	}{{100, "1000", "7"}, {200, "", ""}, {300, "", ""}, {400, "", ""}, {0, "", ""}} {
		uid, ses := auditIDs(c.pid, "nft")
		if uid != c.uid || ses != c.ses {
			t.Errorf("pid %d: %q %q, want %q %q", c.pid, uid, ses, c.uid, c.ses)
		}
	}
}
