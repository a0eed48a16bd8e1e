package store

import (
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
)

// families are the nftables table families a planned change may name.
var families = map[string]bool{
	"ip": true, "ip6": true, "inet": true, "arp": true, "bridge": true, "netdev": true,
}

// ValidateCR checks a new CR as submitted: names, window, planned changes. The API calls
// it to answer with a clear message; the state machine calls it again.
func ValidateCR(cr *model.CR) error {
	switch {
	case !event.ValidName(cr.Tenant):
		return fmt.Errorf("%w: tenant %q", ErrInvalid, cr.Tenant)
	case cr.ID != "" && !event.ValidName(cr.ID):
		return fmt.Errorf("%w: id %q: use 1 to 64 letters, digits, '.', '_' or '-'", ErrInvalid, cr.ID)
	case strings.TrimSpace(cr.Title) == "":
		return fmt.Errorf("%w: title is required", ErrInvalid)
	case strings.TrimSpace(cr.Requester) == "":
		return fmt.Errorf("%w: requester is required", ErrInvalid)
	case !event.ValidName(cr.Device):
		return fmt.Errorf("%w: device %q", ErrInvalid, cr.Device)
	case cr.WindowStart.IsZero() || cr.WindowEnd.IsZero():
		return fmt.Errorf("%w: window_start and window_end are required", ErrInvalid)
	case !cr.WindowEnd.After(cr.WindowStart):
		return fmt.Errorf("%w: window_end must be after window_start", ErrInvalid)
	case len(cr.Changes) == 0:
		return fmt.Errorf("%w: at least one planned change is required", ErrInvalid)
	}
	for i, c := range cr.Changes {
		if err := validatePlanned(c); err != nil {
			return fmt.Errorf("%w: change %d: %v", ErrInvalid, i+1, err)
		}
	}
	return nil
}

func validatePlanned(c model.PlannedChange) error {
	if c.Action != model.ActionAdd && c.Action != model.ActionDelete {
		return fmt.Errorf("action %q: want %q or %q", c.Action, model.ActionAdd, model.ActionDelete)
	}
	f := strings.Fields(c.Chain)
	if len(f) != 3 || !families[f[0]] {
		return fmt.Errorf("chain %q: want \"family table chain\", e.g. \"inet filter input\"", c.Chain)
	}
	if strings.TrimSpace(c.Rule) == "" {
		return fmt.Errorf("rule is empty")
	}
	// TODO: parse the rule with an nft-syntax parser and store its canonical form.
	return nil
}

func applyCreateCR(tx *bolt.Tx, c *createCRCmd) (any, error) {
	cr := c.CR.Clone()
	if err := ValidateCR(cr); err != nil {
		return nil, err
	}
	b := tx.Bucket(bucketCRs)
	n, err := nextCounter(tx, cr.Tenant+"/"+counterCR)
	if err != nil {
		return nil, err
	}
	if cr.ID == "" {
		// Number it; skip numbers an explicitly named CR took.
		for cr.ID = fmt.Sprintf("CR-%06d", n); b.Get(tenantKey(cr.Tenant, cr.ID)) != nil; {
			if n, err = nextCounter(tx, cr.Tenant+"/"+counterCR); err != nil {
				return nil, err
			}
			cr.ID = fmt.Sprintf("CR-%06d", n)
		}
	} else if b.Get(tenantKey(cr.Tenant, cr.ID)) != nil {
		return nil, fmt.Errorf("change request %s: %w", cr.ID, ErrExists)
	}
	cr.Number = n
	cr.State = model.CRSubmitted
	cr.Approvals = nil
	cr.ImplementedAt = time.Time{}
	cr.CreatedAt, cr.UpdatedAt = c.At, c.At
	for i := range cr.Changes {
		p := &cr.Changes[i]
		p.ObservedEvent, p.ObservedSeq = "", 0
	}
	if err := putJSON(b, tenantKey(cr.Tenant, cr.ID), cr); err != nil {
		return nil, err
	}
	return cr, nil
}

// applyApproveCR records an approval. One approval by someone other than the requester
// approves a submitted CR.
// TODO: per-tenant policy (approvals needed per CR type, approver roles).
func applyApproveCR(tx *bolt.Tx, c *approveCRCmd) (any, error) {
	b := tx.Bucket(bucketCRs)
	key := tenantKey(c.Tenant, c.ID)
	var cr model.CR
	ok, err := getJSON(b, key, &cr)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("change request %s: %w", c.ID, ErrNotFound)
	case strings.TrimSpace(c.Approver) == "":
		return nil, fmt.Errorf("%w: approver is required", ErrInvalid)
	case strings.EqualFold(strings.TrimSpace(c.Approver), strings.TrimSpace(cr.Requester)):
		return nil, ErrSelfApproval
	case cr.State != model.CRSubmitted:
		return nil, fmt.Errorf("change request %s is %s, only a submitted one can be approved: %w",
			cr.ID, cr.State, ErrState)
	}
	cr.Approvals = append(cr.Approvals, model.Approval{Approver: c.Approver, At: c.At})
	cr.State = model.CRApproved
	cr.UpdatedAt = c.At
	if err := putJSON(b, key, &cr); err != nil {
		return nil, err
	}
	return &cr, nil
}
