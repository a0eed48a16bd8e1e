package api

import (
	"strings"
	"testing"
	"time"
)

// TestParseWindowDST: local window times that a daylight-saving change skips or repeats
// are refused with the reason; others are read in the zone.
func TestParseWindowDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip(err)
	}
	for _, c := range []struct{ in, want, err string }{
		{"2027-03-28T01:30", "2027-03-28T00:30:00Z", ""},
		{"2027-03-28T02:30", "", "does not exist"},
		{"2027-03-28T03:30", "2027-03-28T01:30:00Z", ""},
		{"2027-10-31T02:30", "", "ambiguous"},
		{"2027-10-31T03:30", "2027-10-31T02:30:00Z", ""},
		{"2027-10-31T02:30:00+01:00", "2027-10-31T01:30:00Z", ""},
	} {
		got, err := parseWindow("window_start", c.in, berlin)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error saying %q", c.in, err, c.err)
			}
		case err != nil || got.Format(time.RFC3339) != c.want:
			t.Errorf("%s: %s %v, want %s", c.in, got.Format(time.RFC3339), err, c.want)
		}
	}
}
