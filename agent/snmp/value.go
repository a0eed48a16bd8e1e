package snmp

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gosnmp/gosnmp"
)

// volatileType reports whether values of this SNMP type are state rather than
// configuration when a profile does not say otherwise: counters, gauges and time ticks
// move by themselves.
func volatileType(t gosnmp.Asn1BER) bool {
	switch t {
	case gosnmp.Counter32, gosnmp.Counter64, gosnmp.Gauge32, gosnmp.TimeTicks:
		return true
	}
	return false
}

// absent reports whether a varbind carries no value (an exception or NULL).
func absent(t gosnmp.Asn1BER) bool {
	switch t {
	case gosnmp.Null, gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView:
		return true
	}
	return false
}

// Render is the canonical text of a varbind's value: integers in decimal ("name(n)" with
// an enum), octet strings quoted as Go ASCII strings when printable and as 0x-hex
// otherwise (or as the syntax says), OIDs and addresses dotted. The result is always
// ASCII and never empty, so that lines and joined rows read unambiguously.
func Render(pdu gosnmp.SnmpPDU, syntax string, enum map[int]string) string {
	switch v := pdu.Value.(type) {
	case []byte:
		return renderBytes(v, pdu.Type, syntax)
	case string:
		if pdu.Type == gosnmp.OctetString || pdu.Type == gosnmp.Opaque {
			return renderBytes([]byte(v), pdu.Type, syntax)
		}
		// OIDs and IP addresses come as strings; keep only ASCII, dotted text.
		s := strings.TrimPrefix(v, ".")
		if s == "" || !printableASCII(s) {
			return renderBytes([]byte(v), pdu.Type, "hex")
		}
		return s
	case int:
		if name, ok := enum[v]; ok {
			return name + "(" + strconv.Itoa(v) + ")"
		}
		return strconv.Itoa(v)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case *big.Int:
		if v == nil {
			return "null"
		}
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case nil:
		return "null"
	default:
		return strconv.QuoteToASCII(fmt.Sprintf("%v", v))
	}
}

func renderBytes(b []byte, t gosnmp.Asn1BER, syntax string) string {
	switch syntax {
	case "hex":
		return hexText(b)
	case "mac":
		if len(b) == 0 {
			return `""`
		}
		parts := make([]string, len(b))
		for i, c := range b {
			parts[i] = fmt.Sprintf("%02x", c)
		}
		return strings.Join(parts, ":")
	case "ip":
		if a, ok := netip.AddrFromSlice(b); ok {
			return a.String()
		}
	case "datetime":
		if s, ok := dateAndTime(b); ok {
			return s
		}
	}
	if t == gosnmp.Opaque {
		return hexText(b)
	}
	if utf8.Valid(b) && printableText(string(b)) {
		return strconv.QuoteToASCII(string(b))
	}
	return hexText(b)
}

func hexText(b []byte) string {
	if len(b) == 0 {
		return `""`
	}
	return "0x" + hex.EncodeToString(b)
}

// printableText reports whether s is text a person typed: no control characters other
// than tab, CR and LF (sysDescr often spans lines).
func printableText(s string) bool {
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\r' && r != '\n' || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// dateAndTime renders an SNMPv2-TC DateAndTime (8 or 11 octets) as RFC 3339 text with
// deciseconds, e.g. 2017-12-20T17:35:35.0+08:00. Out-of-range fields are not a date.
func dateAndTime(b []byte) (string, bool) {
	if len(b) != 8 && len(b) != 11 {
		return "", false
	}
	year := int(b[0])<<8 | int(b[1])
	mon, day, hour, min, sec, ds := int(b[2]), int(b[3]), int(b[4]), int(b[5]), int(b[6]), int(b[7])
	if mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60 || ds > 9 {
		return "", false
	}
	s := fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d.%d", year, mon, day, hour, min, sec, ds)
	if len(b) == 8 {
		return s, true
	}
	sign, oh, om := b[8], int(b[9]), int(b[10])
	if (sign != '+' && sign != '-') || oh > 13 || om > 59 {
		return "", false
	}
	return s + fmt.Sprintf("%c%02d:%02d", sign, oh, om), true
}
