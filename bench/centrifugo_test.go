package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// decodeCentrifugoLine is what the minimal client made of a line before
// the byte scanning, through encoding/json.
func decodeCentrifugoLine(line []byte, channel string) centrifugoLine {
	line = bytes.TrimSpace(line)
	if string(line) == "{}" {
		return centrifugoLine{ping: true}
	}
	var r centrifugoReply
	if json.Unmarshal(line, &r) != nil || r.Push == nil {
		return centrifugoLine{}
	}
	var l centrifugoLine
	if d := r.Push.Disconnect; d != nil {
		l.disconnect = fmt.Sprintf("disconnect %d: %s", d.Code, d.Reason)
	}
	if p := r.Push.Pub; p != nil && r.Push.Channel == channel {
		l.pub, l.sent, l.index = true, p.Data.T, p.Data.I
	}
	return l
}

// centrifugoPub is a publication's line as Centrifugo writes it.
func centrifugoPub(channel string, data []byte) string {
	return fmt.Sprintf(`{"push":{"channel":%q,"pub":{"data":%s}}}`, channel, data)
}

var centrifugoLines = func() []struct {
	name string
	line string
	want centrifugoLine
} {
	at := time.Unix(1_800_000_000, 5)
	pub := func(i int64) centrifugoLine { return centrifugoLine{pub: true, sent: at.UnixNano(), index: i} }
	return []struct {
		name string
		line string
		want centrifugoLine
	}{
		{"a publication", centrifugoPub("bench", encodeCentrifugoData(at, 7, 200)), pub(7)},
		{"without a pad", centrifugoPub("bench", encodeCentrifugoData(at, 8, 10)), pub(8)},
		{"index 0", centrifugoPub("bench", encodeCentrifugoData(at, 0, 10)), pub(0)},
		{"negative numbers", centrifugoPub("bench", []byte(`{"t":-5,"i":-9223372036854775808}`)), centrifugoLine{pub: true, sent: -5, index: -1 << 63}},
		{"largest index", centrifugoPub("bench", []byte(`{"t":1,"i":9223372036854775807}`)), centrifugoLine{pub: true, sent: 1, index: 1<<63 - 1}},
		{"minus zero", centrifugoPub("bench", []byte(`{"t":-0,"i":1}`)), centrifugoLine{pub: true, sent: 0, index: 1}},
		{"CRLF", centrifugoPub("bench", encodeCentrifugoData(at, 9, 100)) + "\r\n", pub(9)},
		{"a ping", "{}", centrifugoLine{ping: true}},
		{"a ping with its newline", " {}\n", centrifugoLine{ping: true}},
		{"a disconnect", `{"push":{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}}`, centrifugoLine{disconnect: "disconnect 3001: shutdown"}},
		{"another channel", centrifugoPub("other", encodeCentrifugoData(at, 1, 10)), centrifugoLine{}},
		{"a longer channel", centrifugoPub("bench2", encodeCentrifugoData(at, 1, 10)), centrifugoLine{}},
		{"a shorter channel", centrifugoPub("benc", encodeCentrifugoData(at, 1, 10)), centrifugoLine{}},
		{"an escaped channel", `{"push":{"channel":"b\u0065nch","pub":{"data":{"t":5,"i":6}}}}`, centrifugoLine{pub: true, sent: 5, index: 6}},
		{"an escaped pad", centrifugoPub("bench", []byte(`{"t":5,"i":6,"p":"x\"\\\u0078"}`)), centrifugoLine{pub: true, sent: 5, index: 6}},
		{"a pad with a control byte", centrifugoPub("bench", []byte("{\"t\":5,\"i\":6,\"p\":\"x\x01\"}")), centrifugoLine{}},
		{"an offset", `{"push":{"channel":"bench","pub":{"data":{"t":5,"i":6},"offset":12}}}`, centrifugoLine{pub: true, sent: 5, index: 6}},
		{"keys in another order", centrifugoPub("bench", []byte(`{"i":6,"t":5}`)), centrifugoLine{pub: true, sent: 5, index: 6}},
		{"an extra key", centrifugoPub("bench", []byte(`{"t":5,"i":6,"p":"x","q":1}`)), centrifugoLine{pub: true, sent: 5, index: 6}},
		{"spaces", `{"push": {"channel": "bench", "pub": {"data": {"t": 5, "i": 6}}}}`, centrifugoLine{pub: true, sent: 5, index: 6}},
		{"upper-case keys", `{"PUSH":{"Channel":"bench","Pub":{"Data":{"T":5,"I":6}}}}`, centrifugoLine{pub: true, sent: 5, index: 6}},
		{"no data", `{"push":{"channel":"bench","pub":{}}}`, centrifugoLine{pub: true}},
		{"a join", `{"push":{"channel":"bench","join":{"info":{"user":"u"}}}}`, centrifugoLine{}},
		{"a reply", `{"id":2,"subscribe":{}}`, centrifugoLine{}},
		{"a leading zero", centrifugoPub("bench", []byte(`{"t":5,"i":06}`)), centrifugoLine{}},
		{"a fraction", centrifugoPub("bench", []byte(`{"t":5.5,"i":6}`)), centrifugoLine{}},
		{"an exponent", centrifugoPub("bench", []byte(`{"t":5e3,"i":6}`)), centrifugoLine{}},
		{"too large", centrifugoPub("bench", []byte(`{"t":9223372036854775808,"i":6}`)), centrifugoLine{}},
		{"twenty digits", centrifugoPub("bench", []byte(`{"t":10000000000000000000,"i":6}`)), centrifugoLine{}},
		{"a string index", centrifugoPub("bench", []byte(`{"t":5,"i":"6"}`)), centrifugoLine{}},
		{"a lone minus", centrifugoPub("bench", []byte(`{"t":-,"i":6}`)), centrifugoLine{}},
		{"truncated", centrifugoPub("bench", encodeCentrifugoData(at, 3, 10))[:60], centrifugoLine{}},
		{"one brace short", strings.TrimSuffix(centrifugoPub("bench", encodeCentrifugoData(at, 3, 10)), "}"), centrifugoLine{}},
		{"one brace more", centrifugoPub("bench", encodeCentrifugoData(at, 3, 10)) + "}", centrifugoLine{}},
		{"trailing bytes", centrifugoPub("bench", encodeCentrifugoData(at, 3, 10)) + "x", centrifugoLine{}},
		{"empty", "", centrifugoLine{}},
		{"not JSON", "hello", centrifugoLine{}},
	}
}()

func TestCentrifugoParserReadsWhatJSONDid(t *testing.T) {
	p := newCentrifugoParser("bench")
	for _, tt := range centrifugoLines {
		if got, want := p.parse([]byte(tt.line)), decodeCentrifugoLine([]byte(tt.line), "bench"); got != want || got != tt.want {
			t.Errorf("%s: %s:\nparser %+v\njson   %+v\nwant   %+v", tt.name, tt.line, got, want, tt.want)
		}
	}
}

func TestCentrifugoParserFastPathAllocatesNothing(t *testing.T) {
	p := newCentrifugoParser("bench")
	msg := []byte(centrifugoPub("bench", encodeCentrifugoData(time.Now(), 1, 200)) + "\n{}\n" +
		centrifugoPub("bench", encodeCentrifugoData(time.Now(), 2, 10)))
	var pubs, pings int
	allocs := testing.AllocsPerRun(100, func() {
		pubs, pings = 0, 0
		for line := range bytes.Lines(msg) {
			l := p.parse(line)
			if l.pub {
				pubs++
			}
			if l.ping {
				pings++
			}
		}
	})
	if pubs != 2 || pings != 1 || allocs != 0 {
		t.Fatalf("%d publications, %d pings, %.1f allocations a message", pubs, pings, allocs)
	}
}

// FuzzCentrifugoParser checks that whatever the byte scanning reads, it
// reads as encoding/json did.
func FuzzCentrifugoParser(f *testing.F) {
	for _, tt := range centrifugoLines {
		f.Add([]byte(tt.line))
	}
	p := newCentrifugoParser("bench")
	f.Fuzz(func(t *testing.T, line []byte) {
		if got, want := p.parse(line), decodeCentrifugoLine(line, "bench"); got != want {
			t.Fatalf("%q: parser %+v, json %+v", line, got, want)
		}
	})
}
