package model

import "time"

// Role is what an API token may do.
type Role string

// Roles, from least to most.
const (
	// RoleViewer reads the tenant's CRs, deviations and devices.
	RoleViewer Role = "viewer"
	// RoleAuditor reads everything of the tenant, histories and exports included.
	RoleAuditor Role = "auditor"
	// RoleRequester also creates, submits and cancels CRs.
	RoleRequester Role = "requester"
	// RoleApprover also approves, rejects, reviews and closes CRs and handles deviations.
	RoleApprover Role = "approver"
	// RoleAdmin is an MSP administrator across all tenants.
	RoleAdmin Role = "admin"
)

// Roles lists the roles.
var Roles = []Role{RoleViewer, RoleAuditor, RoleRequester, RoleApprover, RoleAdmin}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}

// Token is an API token as the store keeps it: only the SHA-256 of the secret.
type Token struct {
	ID string `json:"id"`
	// Tenant is the tenant the token is for; empty for an MSP admin token.
	Tenant string `json:"tenant,omitempty"`
	Role   Role   `json:"role"`
	// Name is who holds the token: it is recorded as the actor of what they do.
	Name      string    `json:"name"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	Expires   time.Time `json:"expires,omitzero"`
	Revoked   bool      `json:"revoked,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
}

// StoredToken is a token with its hash, as the state machine stores it.
type StoredToken struct {
	Token
	Hash string `json:"hash"`
}

// Active reports whether the token may be used at t.
func (t *Token) Active(at time.Time) bool {
	return !t.Revoked && (t.Expires.IsZero() || at.Before(t.Expires))
}
