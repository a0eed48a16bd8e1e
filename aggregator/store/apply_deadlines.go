package store

import (
	"bytes"
	"fmt"
	"time"

	"github.com/fenceline/fenceline/aggregator/deviation"
	"github.com/fenceline/fenceline/aggregator/model"
)

// The change-management deadlines, run on every committed tick with the tick's time
// (ticks.go): a CR's window closing, an emergency CR's review falling due, a device
// falling silent.

// windowChecks verifies every CR whose window closed and raises emergency_review_due for
// every emergency CR whose review deadline passed without a review. The window index
// holds only the CRs that still have a deadline ahead.
func windowChecks(d *Deadlines) error {
	var keys [][]byte
	err := forPrefix(d.Tx.Bucket(bucketWindows), nil, func(k, _ []byte) error {
		keys = append(keys, bytes.Clone(k))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		tenant, id, ok := bytes.Cut(k, []byte("/"))
		if !ok {
			continue
		}
		cr, err := getCR(d.Tx, string(tenant), string(id))
		if err != nil {
			return err
		}
		changed := false
		if cr.State.Authorizing() && cr.Verification == nil {
			fire, err := d.Fire("window_close/"+string(k), cr.WindowEnd)
			if err != nil {
				return err
			}
			if fire {
				pol, err := loadPolicy(d.Tx, cr.Tenant)
				if err != nil {
					return err
				}
				next, dv := deviation.CloseWindow(cr, d.Now, firstDeviation(d.Tx, cr.Tenant),
					pol.EmergencyReviewDuration())
				if dv != nil {
					if err := putDeviation(d.Tx, dv, true); err != nil {
						return err
					}
				}
				cr, changed = next, true
			}
		}
		if !cr.ReviewDue.IsZero() && cr.Review == nil {
			fire, err := d.Fire("review_due/"+string(k), cr.ReviewDue)
			if err != nil {
				return err
			}
			if fire {
				if err := putDeviation(d.Tx, deviation.ReviewDue(cr, d.Now,
					firstDeviation(d.Tx, cr.Tenant)), true); err != nil {
					return err
				}
				cr = cr.Clone()
				cr.History = append(cr.History, model.Transition{From: cr.State, To: cr.State,
					By: model.System, Why: "emergency review overdue", At: d.Now})
				changed = true
			}
		}
		if changed {
			if err := putCR(d.Tx, cr); err != nil {
				return err
			}
		}
		ahead := (cr.State.Authorizing() && cr.Verification == nil) ||
			((cr.State == model.CRDraft || cr.State == model.CRSubmitted) && cr.WindowEnd.After(d.Now)) ||
			(!cr.ReviewDue.IsZero() && cr.Review == nil && !d.Fired("review_due/"+string(k)))
		if !ahead {
			// Nothing ahead for this CR any more.
			if err := d.Tx.Bucket(bucketWindows).Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// silenceChecks raises agent_silent for every device that sent nothing (heartbeats
// included) for longer than its tenant's policy allows. One deviation per silence: the
// device's next event resolves it.
// TODO: an index of devices by last-seen time; every tick reads every device.
func silenceChecks(d *Deadlines) error {
	type silent struct {
		key  []byte
		dev  *model.Device
		due  time.Time
		took time.Duration
	}
	var found []silent
	policies := map[string]*model.Policy{}
	err := forPrefix(d.Tx.Bucket(bucketDevices), nil, func(k, v []byte) error {
		dev, err := decodeDevice(v)
		if err != nil {
			return err
		}
		if dev.LastSeen.IsZero() || dev.Silent != "" {
			return nil
		}
		p, ok := policies[dev.Tenant]
		if !ok {
			if p, err = loadPolicy(d.Tx, dev.Tenant); err != nil {
				return err
			}
			policies[dev.Tenant] = p
		}
		// A device heard last before this leader took office gets a full silence period
		// from then: the aggregator was away (restarted, or failing over), not the device.
		due := dev.LastSeen.Add(p.SilenceDuration())
		if last := d.LeaderSince; !last.IsZero() && dev.LastSeen.Before(last) {
			due = last.Add(p.SilenceDuration())
		}
		if !due.After(d.Now) {
			found = append(found, silent{bytes.Clone(k), dev, due, p.SilenceDuration()})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range found {
		key := fmt.Sprintf("silent/%s/%d", s.key, s.dev.LastSeen.UnixNano())
		fire, err := d.Fire(key, s.due)
		if err != nil || !fire {
			return err
		}
		id, _, err := raiseFinding(d.Tx, s.dev.Tenant, s.dev.Device, model.AgentSilent,
			fmt.Sprintf("nothing from the device, heartbeats included, since %s (allowed: %s)",
				s.dev.LastSeen.UTC().Format(time.RFC3339), s.took), s.dev.HeadSeq, "", "", d.Now)
		if err != nil {
			return err
		}
		s.dev.Silent = id
		if err := putJSON(d.Tx.Bucket(bucketDevices), s.key, s.dev); err != nil {
			return err
		}
	}
	return nil
}
