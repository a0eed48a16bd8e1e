package store

import (
	"crypto/ed25519"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
)

// EnrollResult is what redeeming an enrollment token did.
type EnrollResult struct {
	Device model.Device
	// Reenrolled is true when the device had a key before; its chain may restart.
	Reenrolled bool
}

func applyCreateEnrollment(tx *bolt.Tx, c *createEnrollmentCmd) (any, error) {
	if !event.ValidName(c.Tenant) || !event.ValidName(c.Device) || c.TokenHash == "" {
		return nil, fmt.Errorf("%w: enrollment for %q/%q", ErrInvalid, c.Tenant, c.Device)
	}
	b := tx.Bucket(bucketEnrollments)
	if b.Get([]byte(c.TokenHash)) != nil {
		return nil, fmt.Errorf("enrollment token: %w", ErrExists)
	}
	e := model.Enrollment{
		TokenHash: c.TokenHash, Tenant: c.Tenant, Device: c.Device,
		CreatedAt: c.CreatedAt, Expires: c.Expires,
	}
	if err := putJSON(b, []byte(c.TokenHash), &e); err != nil {
		return nil, err
	}
	return e, nil
}

// applyEnroll redeems a token: the device's key becomes the given one, and the previous
// key (if any) stops being accepted.
func applyEnroll(tx *bolt.Tx, c *enrollCmd) (any, error) {
	if len(c.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key of %d bytes", ErrInvalid, len(c.PublicKey))
	}
	eb := tx.Bucket(bucketEnrollments)
	var e model.Enrollment
	ok, err := getJSON(eb, []byte(c.TokenHash), &e)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, ErrTokenUnknown
	case e.Used:
		return nil, ErrTokenUsed
	case c.At.After(e.Expires):
		return nil, ErrTokenExpired
	}
	e.Used, e.UsedAt = true, c.At
	if err := putJSON(eb, []byte(c.TokenHash), &e); err != nil {
		return nil, err
	}

	db := tx.Bucket(bucketDevices)
	key := deviceKey(e.Tenant, e.Device)
	var d model.Device
	existed, err := getJSON(db, key, &d)
	if err != nil {
		return nil, err
	}
	if !existed {
		d = model.Device{Tenant: e.Tenant, Device: e.Device}
	}
	d.PublicKey = c.PublicKey
	d.KeyID = event.KeyID(ed25519.PublicKey(c.PublicKey))
	d.EnrolledAt = c.At
	d.Enrollments++
	d.NewChain = true
	if err := putJSON(db, key, &d); err != nil {
		return nil, err
	}
	return EnrollResult{Device: d, Reenrolled: existed}, nil
}
