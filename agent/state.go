package agent

import (
	"encoding/json"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// StateBlob encodes rs as the state the agent keeps in its outbox with a state event, so
// tools that prepare an outbox (the replay benchmark) write what the agent reads back.
func StateBlob(rs *ruleset.Ruleset, gen uint32) ([]byte, error) {
	return json.Marshal(&observed{Digest: rs.Digest().String(), Generation: gen, Ruleset: rs})
}
