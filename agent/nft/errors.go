package nft

import "errors"

// Errors of the reader.
var (
	// ErrClosed is returned by a Reader after Close.
	ErrClosed = errors.New("nft reader closed")
	// ErrUnstable is returned when the ruleset changed during every read attempt.
	ErrUnstable = errors.New("ruleset changed during every read attempt")

	// errDumpInterrupted reports that the kernel flagged a dump as interrupted by a
	// ruleset change (NLM_F_DUMP_INTR); the read starts over.
	errDumpInterrupted = errors.New("dump interrupted by a ruleset change")
)
