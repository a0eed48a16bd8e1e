package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/fenceline/fenceline/aggregator/store"
)

// Error is an error with the status and message the client sees. Err, if set, is the
// detail that only the log gets.
type Error struct {
	Status int
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// errorf returns an error whose message the client sees as is.
func errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// clientError decides what the client sees for err: its status and a message that
// reveals nothing internal.
func clientError(err error) (int, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Status, e.Msg
	}
	var nl *store.NotLeaderError
	switch {
	case errors.As(err, &nl):
		// Leadership moved while the request was handled (forward.go forwards the rest).
		return http.StatusServiceUnavailable, nl.Error()
	case errors.Is(err, raft.ErrLeadershipLost):
		return http.StatusServiceUnavailable, "leadership changed during the write: its " +
			"outcome is unknown; read before retrying"
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrState):
		return http.StatusConflict, err.Error()
	case errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, store.ErrTokenUnknown), errors.Is(err, store.ErrTokenUsed),
		errors.Is(err, store.ErrTokenExpired):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, store.ErrSelfApproval), errors.Is(err, store.ErrForbidden):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, store.ErrClosed), errors.Is(err, store.ErrFSMFailed):
		return http.StatusServiceUnavailable, "service unavailable"
	}
	return http.StatusInternalServerError, "internal error"
}
