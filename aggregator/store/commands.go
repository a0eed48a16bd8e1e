package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/nftparse"
)

// command is what goes into the raft log: a type and its JSON payload. Every input the
// state machine needs, including the time, travels inside the payload.
type command struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	// event is an append_event read from its binary form (no Payload then).
	event *appendEventCmd
}

// Command types. A new command gets a new type; the payload of an existing type only
// gains optional fields, because old log entries are replayed with new code.
const (
	cmdCreateEnrollment = "create_enrollment"
	cmdEnroll           = "enroll"
	cmdAppendEvent      = "append_event"
	cmdCreateCR         = "create_cr"
	cmdApproveCR        = "approve_cr"
	cmdCRAction         = "cr_action"
	cmdSetPolicy        = "set_policy"
	cmdSetDeviceTags    = "set_device_tags"
	cmdDeviationAction  = "deviation_action"
	cmdRecordFinding    = "record_finding"
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
	// Envelope is the DSSE envelope as received. (The log holds this command in a
	// binary form: encodeAppendEvent.)
	Envelope []byte `json:"envelope"`
}

// createCRCmd creates a CR; an empty ID is numbered by the state machine.
type createCRCmd struct {
	CR model.CR  `json:"cr"`
	At time.Time `json:"at"`
	// Draft keeps the CR a draft; otherwise it is submitted at once.
	Draft bool `json:"draft,omitempty"`
}

// crActionCmd moves a CR through its life (CRActions).
type crActionCmd struct {
	Tenant string    `json:"tenant"`
	ID     string    `json:"id"`
	Action string    `json:"action"`
	By     string    `json:"by"`
	Role   string    `json:"role,omitempty"`
	Why    string    `json:"why,omitempty"`
	At     time.Time `json:"at"`
}

// setPolicyCmd replaces a tenant's policy.
type setPolicyCmd struct {
	Policy model.Policy `json:"policy"`
	By     string       `json:"by"`
	At     time.Time    `json:"at"`
}

// setDeviceTagsCmd replaces a device's tags.
type setDeviceTagsCmd struct {
	Tenant string   `json:"tenant"`
	Device string   `json:"device"`
	Tags   []string `json:"tags"`
}

// deviationActionCmd acknowledges or resolves a deviation.
type deviationActionCmd struct {
	Tenant string `json:"tenant"`
	ID     string `json:"id"`
	// Action is acknowledge or resolve.
	Action string `json:"action"`
	By     string `json:"by"`
	Why    string `json:"why,omitempty"`
	// Resolution is one of model.Resolutions; CR names the retroactive CR.
	Resolution string    `json:"resolution,omitempty"`
	CR         string    `json:"cr,omitempty"`
	At         time.Time `json:"at"`
}

// recordFindingCmd records what the proposer found about a device's record outside the
// chain (a message with a bad signature, an event that broke the chain).
type recordFindingCmd struct {
	Tenant string              `json:"tenant"`
	Device string              `json:"device"`
	Kind   model.DeviationKind `json:"kind"`
	Detail string              `json:"detail"`
	Seq    uint64              `json:"seq,string,omitempty"`
	At     time.Time           `json:"at"`
}

// approveCRCmd records an approval.
type approveCRCmd struct {
	Tenant   string    `json:"tenant"`
	ID       string    `json:"id"`
	Approver string    `json:"approver"`
	At       time.Time `json:"at"`
}

// encodeCommand writes a command as the newest log format does (append_event binary).
func encodeCommand(typ string, payload any) ([]byte, error) {
	if c, ok := payload.(*appendEventCmd); ok && typ == cmdAppendEvent {
		return encodeAppendEvent(c), nil
	}
	return encodeJSONCommand(typ, payload)
}

// encodeJSONCommand writes a command in JSON, which every log format reads.
func encodeJSONCommand(typ string, payload any) ([]byte, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return json.Marshal(command{Type: typ, Payload: p})
}

// Events, the bulk of the log, are appended in a binary form: the JSON form spent a
// third of the state machine's decoding on the envelope's base64 inside the command's
// JSON. A log entry that starts with binaryAppendEvent is
//
//	binaryAppendEvent, uvarint length + tenant, uvarint length + device,
//	ReceivedAt as big-endian int64 Unix seconds and uint32 nanoseconds, the envelope
//	(the rest)
//
// and any other entry is a JSON command. Entries written in JSON by earlier versions are
// still read. A node of an earlier version would refuse binary entries as invalid, so
// the leader writes them only once the cluster's log format is 2 (logformat.go).
const binaryAppendEvent = 0x01

// errEntryFormat marks a log entry in a format this version does not read.
var errEntryFormat = errors.New("raft log entry in a format this version does not read")

func encodeAppendEvent(c *appendEventCmd) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(c.Tenant)+len(c.Device)+12+len(c.Envelope))
	b = append(b, binaryAppendEvent)
	b = binary.AppendUvarint(b, uint64(len(c.Tenant)))
	b = append(b, c.Tenant...)
	b = binary.AppendUvarint(b, uint64(len(c.Device)))
	b = append(b, c.Device...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.ReceivedAt.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(c.ReceivedAt.Nanosecond()))
	return append(b, c.Envelope...)
}

func decodeAppendEvent(b []byte) (*appendEventCmd, error) {
	if len(b) == 0 || b[0] != binaryAppendEvent {
		return nil, errors.New("not a binary append_event")
	}
	b = b[1:]
	str := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", errors.New("truncated append_event")
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, nil
	}
	var c appendEventCmd
	var err error
	if c.Tenant, err = str(); err != nil {
		return nil, err
	}
	if c.Device, err = str(); err != nil {
		return nil, err
	}
	if len(b) < 12 {
		return nil, errors.New("truncated append_event")
	}
	c.ReceivedAt = time.Unix(int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint32(b[8:]))).UTC()
	// A copy: raft's log entry may be reused once applied.
	c.Envelope = slices.Clone(b[12:])
	return &c, nil
}

// decodeCommand reads a log entry: a binary append_event or a JSON command.
func decodeCommand(data []byte) (command, error) {
	if len(data) > 0 && data[0] == binaryAppendEvent {
		c, err := decodeAppendEvent(data)
		if err != nil {
			return command{}, err
		}
		return command{Type: cmdAppendEvent, event: c}, nil
	}
	// A JSON command starts with '{' (json.Marshal writes no space before it); any other
	// first byte is a format of a later version.
	if len(data) > 0 && data[0] != '{' {
		return command{}, fmt.Errorf("%w (first byte 0x%02x): upgrade this node", errEntryFormat,
			data[0])
	}
	var cmd command
	err := json.Unmarshal(data, &cmd)
	return cmd, err
}

// CreateCR creates a change request, submitted (or a draft when draft is set); a standard
// CR under its template is approved at once. An empty cr.ID is numbered. Planned rules
// and elements are parsed here, on the proposer, into the canonical form the agent
// reports (the parse error names the position); the state machine stores the result.
func (s *Store) CreateCR(ctx context.Context, cr *model.CR, now time.Time) (*model.CR, error) {
	return s.createCR(ctx, cr, now, false)
}

// CreateDraftCR creates a change request in state draft.
func (s *Store) CreateDraftCR(ctx context.Context, cr *model.CR, now time.Time) (*model.CR, error) {
	return s.createCR(ctx, cr, now, true)
}

func (s *Store) createCR(ctx context.Context, cr *model.CR, now time.Time, draft bool) (*model.CR, error) {
	cr = cr.Clone()
	if err := ValidateCR(cr); err != nil {
		return nil, err
	}
	if err := s.prepareCR(cr); err != nil {
		return nil, err
	}
	v, err := s.apply(ctx, cmdCreateCR, &createCRCmd{CR: *cr, At: now.UTC(), Draft: draft})
	if err != nil {
		return nil, err
	}
	return v.(*model.CR), nil
}

// prepareCR parses the planned rules and elements against the named sets of the target
// devices' current rulesets.
func (s *Store) prepareCR(cr *model.CR) error {
	states, err := s.targetStates(cr)
	if err != nil {
		return err
	}
	ctxFor := func(family, table string) nftparse.Context {
		for _, st := range states {
			if st.Ruleset != nil && st.Ruleset.Table(family, table) != nil {
				return nftparse.ContextFor(st.Ruleset, family, table)
			}
		}
		return nftparse.Context{Family: family, Table: table}
	}
	var out []model.PlannedChange
	for i, p := range cr.Changes {
		switch p.Action {
		case model.ActionAdd, model.ActionDelete:
			f := strings.Fields(p.Chain)
			p.Chain = strings.Join(f, " ")
			canon, err := nftparse.Rule(ctxFor(f[0], f[1]), p.Rule)
			if err != nil {
				return parseError(i, "rule", p.Rule, err)
			}
			p.Canonical = canon
			out = append(out, p)
		case model.ActionAddElement, model.ActionDeleteElement:
			f := strings.Fields(p.Set)
			p.Set = strings.Join(f, " ")
			elems, err := nftparse.Elements(ctxFor(f[0], f[1]), f[2], p.Element)
			if err != nil {
				return parseError(i, "element", p.Element, err)
			}
			for _, e := range elems {
				q := p
				q.Canonical = e
				out = append(out, q)
			}
		default:
			p.Chain = strings.Join(strings.Fields(p.Chain), " ")
			out = append(out, p)
		}
	}
	cr.Changes = out
	return nil
}

// parseError explains a planned rule or element that does not parse, with the position.
func parseError(i int, what, text string, err error) error {
	var pe *nftparse.Error
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: change %d: %s at line %d column %d: %s: %s\n%s", ErrInvalid, i+1,
			what, pe.Line(), pe.Col(), pe.Err, pe.Msg, pe.Caret())
	}
	return fmt.Errorf("%w: change %d: %s %q: %v", ErrInvalid, i+1, what, text, err)
}

// targetStates returns the current views of the devices a CR targets that have reported
// a state: those resolved at approval, or before it those it names or selects by tag.
func (s *Store) targetStates(cr *model.CR) ([]*model.DeviceState, error) {
	var states []*model.DeviceState
	err := s.fsm.view(func(tx *bolt.Tx) error {
		names := cr.NamedDevices()
		if len(cr.Devices) > 0 {
			names = cr.Devices
		} else if len(cr.Targets.Tags) > 0 {
			err := forPrefix(tx.Bucket(bucketDevices), tenantPrefix(cr.Tenant), func(_, v []byte) error {
				d, err := decodeDevice(v)
				if err == nil && d.HasTags(cr.Targets.Tags) {
					names = append(names, d.Device)
				}
				return err
			})
			if err != nil {
				return err
			}
		}
		for _, n := range names {
			st, err := loadDevState(tx, cr.Tenant, n)
			if err != nil {
				return err
			}
			if st != nil {
				states = append(states, st)
			}
		}
		return nil
	})
	return states, err
}

// ApproveCR records approver's approval of the tenant's CR id.
func (s *Store) ApproveCR(ctx context.Context, tenant, id, approver string,
	now time.Time) (*model.CR, error) {
	return s.CRAction(ctx, CRActionRequest{Tenant: tenant, ID: id, Action: CRApprove, By: approver}, now)
}

// CRActionRequest is one step of a CR's life by a person.
type CRActionRequest struct {
	Tenant, ID, Action, By, Role, Why string
}

// CRAction submits, approves, rejects, cancels, reviews or closes a CR.
func (s *Store) CRAction(ctx context.Context, r CRActionRequest, now time.Time) (*model.CR, error) {
	v, err := s.apply(ctx, cmdCRAction, &crActionCmd{Tenant: r.Tenant, ID: r.ID, Action: r.Action,
		By: r.By, Role: r.Role, Why: r.Why, At: now.UTC()})
	if err != nil {
		return nil, err
	}
	return v.(*model.CR), nil
}

// MinSilenceAfter is the shortest silence limit a policy may set.
const MinSilenceAfter = time.Minute

// SetPolicy replaces a tenant's policy. The time zone is checked against the tz database
// here, on the proposer.
func (s *Store) SetPolicy(ctx context.Context, p *model.Policy, by string, now time.Time) (*model.Policy, error) {
	if p.TimeZone == "" {
		return nil, fmt.Errorf("%w: time_zone is missing: a policy is set whole (`fencectl policy "+
			"show -o json` gives the current one to edit)", ErrInvalid)
	}
	if _, err := time.LoadLocation(p.TimeZone); err != nil || p.TimeZone == "" || p.TimeZone == "Local" {
		return nil, fmt.Errorf("%w: time_zone %q is not an IANA zone such as Europe/Berlin", ErrInvalid,
			p.TimeZone)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// Checked here, not in Validate: the state machine keeps accepting what it accepted.
	if err := p.Satisfiable(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if d := p.SilenceDuration(); d < MinSilenceAfter {
		return nil, fmt.Errorf("%w: silence_after %s: want at least %s, and more than twice the "+
			"agents' heartbeat_interval (30s by default), or healthy agents count as silent",
			ErrInvalid, p.SilenceAfter, MinSilenceAfter)
	}
	v, err := s.apply(ctx, cmdSetPolicy, &setPolicyCmd{Policy: *p, By: by, At: now.UTC()})
	if err != nil {
		return nil, err
	}
	return v.(*model.Policy), nil
}

// SetDeviceTags replaces a device's tags.
func (s *Store) SetDeviceTags(ctx context.Context, tenant, device string, tags []string) (*model.Device, error) {
	v, err := s.apply(ctx, cmdSetDeviceTags, &setDeviceTagsCmd{Tenant: tenant, Device: device, Tags: tags})
	if err != nil {
		return nil, err
	}
	return v.(*model.Device), nil
}

// DeviationActionRequest acknowledges or resolves a deviation.
type DeviationActionRequest struct {
	Tenant, ID, Action, By, Why, Resolution, CR string
}

// DeviationAction acknowledges or resolves a deviation.
func (s *Store) DeviationAction(ctx context.Context, r DeviationActionRequest, now time.Time) (*model.Deviation, error) {
	v, err := s.apply(ctx, cmdDeviationAction, &deviationActionCmd{Tenant: r.Tenant, ID: r.ID,
		Action: r.Action, By: r.By, Why: r.Why, Resolution: r.Resolution, CR: r.CR, At: now.UTC()})
	if err != nil {
		return nil, err
	}
	return v.(*model.Deviation), nil
}

// RecordFinding records a finding about a device's record that no accepted event carries:
// a message on its topic with a bad signature, an event that broke its chain. While a
// deviation of that kind is open for the device, it is counted there. It returns the
// deviation's id.
func (s *Store) RecordFinding(ctx context.Context, tenant, device string, kind model.DeviationKind,
	detail string, seq uint64, now time.Time) (string, error) {
	v, err := s.apply(ctx, cmdRecordFinding, &recordFindingCmd{Tenant: tenant, Device: device,
		Kind: kind, Detail: detail, Seq: seq, At: now.UTC()})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}
