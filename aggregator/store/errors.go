package store

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Errors returned by the store. The API maps them to HTTP statuses; callers test them with
// errors.Is.
var (
	// ErrNotFound: no record with that key (tenant, device, CR).
	ErrNotFound = errors.New("not found")
	// ErrExists: a record with that key exists already (a CR id).
	ErrExists = errors.New("already exists")
	// ErrInvalid: the command's content is not acceptable (a validation the state machine
	// repeats, so that every node agrees whatever the proposer checked).
	ErrInvalid = errors.New("invalid")
	// ErrTokenUnknown: no enrollment token has that hash.
	ErrTokenUnknown = errors.New("enrollment token unknown")
	// ErrTokenUsed: the enrollment token was used already.
	ErrTokenUsed = errors.New("enrollment token already used")
	// ErrTokenExpired: the enrollment token's expiry has passed.
	ErrTokenExpired = errors.New("enrollment token expired")
	// ErrSelfApproval: the requester of a CR tried to approve it.
	ErrSelfApproval = errors.New("requester cannot approve their own change request")
	// ErrForbidden: the person may not do this (an approver without an approving role).
	ErrForbidden = errors.New("not allowed")
	// ErrState: the CR is not in a state that allows the transition.
	ErrState = errors.New("wrong state")
	// ErrFSMFailed: the state machine could not write its state file and stopped
	// applying; the node must be restarted (it then re-applies from the raft log).
	ErrFSMFailed = errors.New("state machine failed")
	// ErrClosed: the store was shut down.
	ErrClosed = errors.New("store closed")
)

// NotLeaderError is returned for writes (and linearizable reads) on a node that is not
// the raft leader. It names the leader, if known, so a caller can forward or retry
// there. It matches raft.ErrNotLeader.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string // raft address
	LeaderAPI  string // HTTP API URL, if the node table has it
	// Stale: no leader is reachable now; the fields name the last leader this node saw.
	Stale bool
}

func (e *NotLeaderError) Error() string {
	switch {
	case e.LeaderID == "":
		return "not the leader; no leader known"
	case e.Stale:
		return fmt.Sprintf("not the leader; no leader reachable (last known leader %s at %s%s)",
			e.LeaderID, e.LeaderAddr, apiSuffix(e.LeaderAPI))
	}
	return fmt.Sprintf("not the leader; leader is %s at %s%s", e.LeaderID, e.LeaderAddr,
		apiSuffix(e.LeaderAPI))
}

func apiSuffix(api string) string {
	if api == "" {
		return ""
	}
	return ", API " + api
}

// Unwrap makes errors.Is(err, raft.ErrNotLeader) hold.
func (e *NotLeaderError) Unwrap() error { return raft.ErrNotLeader }
