package snmp

import "errors"

// Errors. Callers act on them with errors.Is; each is wrapped with the target and the OID
// or table it concerns.
var (
	// ErrTimeout: the target did not answer within the timeout and its retries (it is
	// down, unreachable, or silently drops requests with a wrong community or user).
	ErrTimeout = errors.New("no response from target")
	// ErrAuth: an SNMPv3 report refused the request (unknown user, wrong digest,
	// decryption error, unsupported security level, unknown engine id).
	ErrAuth = errors.New("snmpv3 authentication refused")
	// ErrPDU: the response carried an SNMP error status (genErr, noAccess, tooBig …).
	ErrPDU = errors.New("snmp error status")
	// ErrNotIncreasing: a walk returned an OID at or before one it had already returned;
	// the agent loops, and the walk stops instead of going round forever.
	ErrNotIncreasing = errors.New("walk OID not increasing")
	// ErrWalkLimit: a walk returned more varbinds than its bound; the agent never ends
	// the subtree, or the table is far larger than a configuration table can be.
	ErrWalkLimit = errors.New("walk exceeded its varbind bound")
	// ErrUnstable: the configuration moved during every walk of a snapshot (a table
	// changed mid-walk each time); no consistent state could be read this round.
	ErrUnstable = errors.New("configuration changed during every walk")
	// ErrMalformed: a response could not be read (garbage bytes, a varbind outside the
	// requested subtree, an index that is not an OID suffix).
	ErrMalformed = errors.New("malformed snmp response")
	// ErrProfile: a profile file is invalid or refers to a profile that does not exist.
	ErrProfile = errors.New("invalid snmp profile")
)
