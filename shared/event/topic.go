package event

import (
	"fmt"
	"strings"
)

// TopicPrefix is the root of every Fenceline MQTT topic.
const TopicPrefix = "fenceline/v1/"

// Topic kinds under a device.
const (
	TopicEvents = "events" // agent → aggregator, QoS 1
	TopicAcks   = "acks"   // aggregator → agent, retained: highest committed sequence
	TopicStatus = "status" // the agent's online/offline, retained, with a will
)

// DeviceTopic is fenceline/v1/{tenant}/{device}/{kind}.
func DeviceTopic(tenant, device, kind string) string {
	return TopicPrefix + tenant + "/" + device + "/" + kind
}

// AlertsTopic is fenceline/v1/{tenant}/alerts.
func AlertsTopic(tenant string) string { return TopicPrefix + tenant + "/alerts" }

// EventsSubscription matches every device's events topic.
const EventsSubscription = TopicPrefix + "+/+/" + TopicEvents

// ParseDeviceTopic splits a device topic into tenant, device and kind (TopicEvents,
// TopicAcks or TopicStatus).
func ParseDeviceTopic(topic string) (tenant, device, kind string, err error) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || !ValidName(parts[0]) || !ValidName(parts[1]) {
		return "", "", "", fmt.Errorf("not a device topic: %q", topic)
	}
	switch parts[2] {
	case TopicEvents, TopicAcks, TopicStatus:
	default:
		return "", "", "", fmt.Errorf("not a device topic: %q", topic)
	}
	return parts[0], parts[1], parts[2], nil
}

// Ack is what the aggregator publishes, retained, on a device's acks topic: the highest
// sequence number committed without a gap, and that event's ID. An agent may forget every
// event at or below Seq.
type Ack struct {
	Seq uint64 `json:"seq,string"`
	ID  string `json:"id,omitempty"`
	// Sig is the aggregator's Ed25519 signature over the device and the head (SignAck),
	// standard base64; agents that learned the aggregator's ack key at enrollment accept
	// only signed acks.
	Sig string `json:"sig,omitempty"`
	// At is when the aggregator sent the ack (Unix milliseconds, its clock), and AtSig
	// its signature over the device, the head and At. Agents use it to tell a replayed
	// old ack from the aggregator's standing head.
	At    int64  `json:"at,string,omitempty"`
	AtSig string `json:"at_sig,omitempty"`
}
