package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
)

// command is what goes into the raft log: a type and its JSON payload. Every input the
// state machine needs, including the time, travels inside the payload.
type command struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// Command types. A new command gets a new type; the payload of an existing type only
// gains optional fields, because old log entries are replayed with new code.
const (
	cmdCreateEnrollment = "create_enrollment"
	cmdEnroll           = "enroll"
	cmdAppendEvent      = "append_event"
	cmdCreateCR         = "create_cr"
	cmdApproveCR        = "approve_cr"
)

// createEnrollmentCmd registers a one-time token by its hash.
type createEnrollmentCmd struct {
	TokenHash string    `json:"token_hash"`
	Tenant    string    `json:"tenant"`
	Device    string    `json:"device"`
	CreatedAt time.Time `json:"created_at"`
	Expires   time.Time `json:"expires"`
}

// enrollCmd redeems a token for a device key.
type enrollCmd struct {
	TokenHash string    `json:"token_hash"`
	PublicKey []byte    `json:"public_key"`
	At        time.Time `json:"at"`
}

// appendEventCmd carries an envelope whose signature the proposer verified against the
// key enrolled for Tenant and Device (the topic's names).
type appendEventCmd struct {
	Tenant     string    `json:"tenant"`
	Device     string    `json:"device"`
	ReceivedAt time.Time `json:"received_at"`
	// Envelope is the DSSE envelope as received.
	// TODO: a binary command encoding; base64 in JSON makes a 64 MiB baseline an 86 MiB
	// log entry.
	Envelope []byte `json:"envelope"`
}

// createCRCmd creates a CR; an empty ID is numbered by the state machine.
type createCRCmd struct {
	CR model.CR  `json:"cr"`
	At time.Time `json:"at"`
}

// approveCRCmd records an approval.
type approveCRCmd struct {
	Tenant   string    `json:"tenant"`
	ID       string    `json:"id"`
	Approver string    `json:"approver"`
	At       time.Time `json:"at"`
}

func encodeCommand(typ string, payload any) ([]byte, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return json.Marshal(command{Type: typ, Payload: p})
}
