// Package identity holds the agent's signing key and its enrollment: which tenant and
// device the aggregator registered the key for. Enrollment trades a one-time token from
// `fencectl enroll` and a freshly generated Ed25519 public key for that registration.
package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fenceline/fenceline/shared/event"
)

// File names inside the agent's state directory.
const (
	KeyFile      = "agent.key"
	IdentityFile = "identity.json"
)

// ErrNotEnrolled means the state directory holds no enrollment yet.
var ErrNotEnrolled = errors.New("agent not enrolled")

// Identity is what enrollment established.
type Identity struct {
	Tenant     string    `json:"tenant"`
	Device     string    `json:"device"`
	KeyID      string    `json:"key_id"`
	Aggregator string    `json:"aggregator_url"`
	BrokerURL  string    `json:"broker_url,omitempty"`
	EnrolledAt time.Time `json:"enrolled_at"`
	// AckKey is the aggregator's public ack key (standard base64), learnt at enrollment;
	// the uplink accepts only acks signed with it. Empty for an aggregator that named
	// none: acks are then taken unsigned.
	AckKey string `json:"ack_key,omitempty"`

	Key ed25519.PrivateKey `json:"-"`
}

// AckPublicKey decodes AckKey; nil when the aggregator named none.
func (id *Identity) AckPublicKey() (ed25519.PublicKey, error) {
	if id.AckKey == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(id.AckKey)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("ack_key %q: not a standard-base64 Ed25519 public key", id.AckKey)
	}
	return ed25519.PublicKey(b), nil
}

// Load reads the identity and key from dir.
func Load(dir string) (*Identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, IdentityFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s in %s", ErrNotEnrolled, IdentityFile, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("parse %s: %w", IdentityFile, err)
	}
	key, err := readKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	if got := event.KeyID(key.Public().(ed25519.PublicKey)); got != id.KeyID {
		return nil, fmt.Errorf("key %s does not match enrolled key %s", got, id.KeyID)
	}
	id.Key = key
	return &id, nil
}

// enrollRequest and enrollResponse are the aggregator's POST /v1/enroll contract.
type enrollRequest struct {
	Token     string `json:"token"`
	PublicKey string `json:"public_key"`
}

type enrollResponse struct {
	Tenant    string `json:"tenant"`
	Device    string `json:"device"`
	KeyID     string `json:"key_id"`
	BrokerURL string `json:"broker_url"`
	AckKey    string `json:"ack_key"`
}

// Enroll generates a new key, registers it with the aggregator at server using the
// one-time token, and writes key and identity into dir. An existing enrollment in dir is
// replaced only after the aggregator accepted the new key.
func Enroll(ctx context.Context, client *http.Client, server, token, dir string) (*Identity, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	body, _ := json.Marshal(enrollRequest{
		Token:     strings.TrimSpace(token),
		PublicKey: base64.StdEncoding.EncodeToString(pub),
	})
	url := strings.TrimRight(server, "/") + "/v1/enroll"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rb, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("enroll refused (%s): %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("enroll refused: %s", resp.Status)
	}
	var er enrollResponse
	if err := json.Unmarshal(rb, &er); err != nil {
		return nil, fmt.Errorf("enroll response: %w", err)
	}
	keyID := event.KeyID(pub)
	if er.KeyID != keyID || !event.ValidName(er.Tenant) || !event.ValidName(er.Device) {
		return nil, fmt.Errorf("enroll response does not match the request: %+v", er)
	}
	id := &Identity{
		Tenant: er.Tenant, Device: er.Device, KeyID: keyID, Aggregator: server,
		BrokerURL: er.BrokerURL, EnrolledAt: time.Now().UTC(), Key: key, AckKey: er.AckKey,
	}
	if _, err := id.AckPublicKey(); err != nil {
		return nil, fmt.Errorf("enroll response: %w", err)
	}
	if err := id.save(dir); err != nil {
		return nil, err
	}
	return id, nil
}

// LearnAckKey asks the aggregator at server for its public ack key and records it in the
// identity in dir. It is for enrollments from before the enrollment response carried
// the key; the key is trusted as the enrollment was, on the word of that server.
func (id *Identity) LearnAckKey(ctx context.Context, client *http.Client, server, dir string) error {
	url := strings.TrimRight(server, "/") + "/v1/ack-key"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("ack key: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ack key: %w", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ack key: %s: %s", resp.Status, strings.TrimSpace(string(rb)))
	}
	var r struct {
		AckKey string `json:"ack_key"`
	}
	if err := json.Unmarshal(rb, &r); err != nil {
		return fmt.Errorf("ack key response: %w", err)
	}
	learnt := *id
	learnt.AckKey = r.AckKey
	if k, err := learnt.AckPublicKey(); err != nil || k == nil {
		return fmt.Errorf("ack key response: %q is not an Ed25519 public key", r.AckKey)
	}
	if err := learnt.save(dir); err != nil {
		return err
	}
	id.AckKey = r.AckKey
	return nil
}

func (id *Identity) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeAtomic(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(id, "", "  ")
	return writeAtomic(filepath.Join(dir, IdentityFile), append(b, '\n'), 0o600)
}

func readKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s: not an Ed25519 key", path)
	}
	return ek, nil
}

// writeAtomic writes via a temporary file, fsync and rename, so a crash leaves either the
// old or the new file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
