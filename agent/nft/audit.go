package nft

import (
	"os"
	"strconv"
	"strings"
)

// procDir is where auditIDs reads process attributes; tests point it elsewhere.
var procDir = "/proc"

// unsetID is what the kernel reports for a login uid or session id never set: the
// process does not descend from a login session (daemons, containers, this agent).
const unsetID = "4294967295"

// auditIDs returns the audit login uid and session id of the committing process, read
// from /proc/PID/loginuid and /proc/PID/sessionid. The generation message arrives while
// the committer may still be waiting for its acknowledgement; nft exits right after, so
// a short-lived committer is often gone by then, and both stay empty. They are also left
// empty when the pid now belongs to another program (comm differs) or was never set.
//
// The kernel's own audit trail (AUDIT_NETFILTER_CFG records on the audit multicast
// group) would carry auid and ses even for a process that is gone, but it exists only
// while auditing is enabled host-wide; the agent does not enable it.
// TODO: read AUDIT_NETFILTER_CFG records when auditing is on (not the case on the test
// kernel, so nothing here could be tested against it).
func auditIDs(pid uint32, comm string) (loginUID, session string) {
	if pid == 0 {
		return "", ""
	}
	dir := procDir + "/" + strconv.FormatUint(uint64(pid), 10)
	read := func(name string) string {
		b, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			return ""
		}
		v := strings.TrimSpace(string(b))
		if v == unsetID {
			return ""
		}
		return v
	}
	uid, ses := read("loginuid"), read("sessionid")
	if uid == "" && ses == "" {
		return "", ""
	}
	// The pid may have been reused since the commit.
	if c := read("comm"); comm != "" && c != comm {
		return "", ""
	}
	return uid, ses
}
