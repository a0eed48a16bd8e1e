package event_test

import (
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/event"
)

func TestDeviceTopic(t *testing.T) {
	for _, kind := range []string{event.TopicEvents, event.TopicAcks, event.TopicStatus} {
		topic := event.DeviceTopic("acme", "fw-01.site_a", kind)
		if want := "fenceline/v1/acme/fw-01.site_a/" + kind; topic != want {
			t.Errorf("DeviceTopic = %q, want %q", topic, want)
		}
		tenant, device, k, err := event.ParseDeviceTopic(topic)
		if err != nil || tenant != "acme" || device != "fw-01.site_a" || k != kind {
			t.Errorf("ParseDeviceTopic(%q) = %q, %q, %q, %v", topic, tenant, device, k, err)
		}
	}
	if got := event.EventsSubscription; got != "fenceline/v1/+/+/events" {
		t.Errorf("EventsSubscription = %q", got)
	}
	if got := event.AlertsTopic("acme"); got != "fenceline/v1/acme/alerts" {
		t.Errorf("AlertsTopic = %q", got)
	}
}

func TestParseDeviceTopicRejects(t *testing.T) {
	long := strings.Repeat("a", 65)
	for _, topic := range []string{
		"", "fenceline/v1/", "fenceline/v1/acme/events", "fenceline/v2/acme/fw/events",
		"/fenceline/v1/acme/fw/events", "fenceline/v1/acme/fw/events/",
		"fenceline/v1/acme/fw/x/events",
		"fenceline/v1/+/fw/events", "fenceline/v1/acme/+/events", "fenceline/v1/#",
		"fenceline/v1/acme/#/events", "fenceline/v1//fw/events", "fenceline/v1/acme//events",
		"fenceline/v1/" + long + "/fw/events", "fenceline/v1/acme/" + long + "/events",
		"fenceline/v1/.acme/fw/events", "fenceline/v1/acme/-fw/events",
		"fenceline/v1/ac me/fw/events",
		"fenceline/v1/acmé/fw/events", "fenceline/v1/acme/fw\x00/events",
		// The kind is one of the three device topics.
		"fenceline/v1/acme/fw/", "fenceline/v1/acme/fw/+", "fenceline/v1/acme/fw/#",
		"fenceline/v1/acme/fw/alerts", "fenceline/v1/acme/fw/Events",
	} {
		if tenant, device, kind, err := event.ParseDeviceTopic(topic); err == nil {
			t.Errorf("ParseDeviceTopic(%q) = %q, %q, %q", topic, tenant, device, kind)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{
		"a", "Z", "0", "_x", "acme", "fw-01.site_a", strings.Repeat("x", 64),
	} {
		if !event.ValidName(ok) {
			t.Errorf("ValidName(%q) = false", ok)
		}
	}
	for _, bad := range []string{
		"", ".", "-", ".a", "-a", "a/b", "a+", "#", "a b", "é", "a\n", strings.Repeat("x", 65),
		"a*",
	} {
		if event.ValidName(bad) {
			t.Errorf("ValidName(%q) = true", bad)
		}
	}
}
