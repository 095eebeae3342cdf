package envelope

import (
	"bytes"
	"errors"
	"strconv"
	"unsafe"

	"github.com/vigil-k8s/vigil/ingest/internal/jsonscan"
)

// A CloudWatch Logs subscription record carries each audit event as an
// escaped string: parsing the record finds the end of that string, and
// reading it unescapes it again. fastCloudWatch reads the record as AWS
// writes it (a DATA_MESSAGE with its six members) in one pass, each message
// unescaped once, and decodes it as cloudWatchMessage would. Anything it
// does not read exactly as the parser does (an escaped member name, a
// repeated member, a timestamp that is not a plain integer, an id with
// escapes, a log event that is no object) makes it return false before it
// has passed anything on: the parser then reads the record.

// errNotFast stops the one-pass read of a record laid out otherwise.
var errNotFast = errors.New("not the layout the one-pass reader takes")

// cwEvent is a log event read by fastCloudWatch; its message is
// d.cwBuf[msg[0]:msg[1]], its id shares the record's bytes.
type cwEvent struct {
	id  string
	ts  int64
	msg [2]int
}

func (d *Decoder) fastCloudWatch(data []byte, origin string) (bool, error) {
	var group, stream []byte
	seen := 0
	d.cw, d.cwBuf = d.cw[:0], d.cwBuf[:0]
	end, err := jsonscan.Members(data, 0, func(name []byte, start int) (int, error) {
		// Only the members AWS writes: any other is another envelope,
		// which the first member usually shows.
		bit := memberBit(name, "messageType", "logGroup", "logStream", "logEvents", "owner", "subscriptionFilters")
		if bit <= 0 || seen&bit != 0 {
			return start, errNotFast
		}
		seen |= bit
		switch bit {
		case 8:
			return d.fastLogEvents(data, start)
		case 16, 32:
			end, _, err := jsonscan.Value(data, start)
			return end, err
		}
		s, end, ok := plainString(data, start)
		switch {
		case !ok || bit == 1 && string(s) != "DATA_MESSAGE":
			return start, errNotFast
		case bit == 2:
			group = s
		case bit == 4:
			stream = s
		}
		return end, nil
	})
	if err != nil || seen&1 == 0 || jsonscan.End(data, end) != nil {
		return false, nil
	}
	return true, d.cloudWatchEvents(string(group), string(stream), origin)
}

// memberBit returns 1<<i for the member name that is names[i], 0 for
// another name, and -1 for a name with an escape (which the parser would
// read unescaped).
func memberBit(name []byte, names ...string) int {
	if bytes.IndexByte(name, '\\') >= 0 {
		return -1
	}
	for i, n := range names {
		if string(name) == n {
			return 1 << i
		}
	}
	return 0
}

// fastLogEvents reads the logEvents array into d.cw.
func (d *Decoder) fastLogEvents(data []byte, i int) (int, error) {
	i = jsonscan.SkipSpace(data, i)
	if i >= len(data) || data[i] != '[' {
		return i, errNotFast
	}
	i = jsonscan.SkipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1, nil
	}
	for {
		var ev cwEvent
		seen := 0
		end, err := jsonscan.Members(data, i, func(name []byte, start int) (int, error) {
			bit := memberBit(name, "id", "timestamp", "message")
			if bit < 0 || seen&bit != 0 {
				return start, errNotFast
			}
			seen |= bit
			switch bit {
			case 1:
				s, end, ok := plainString(data, start)
				if !ok {
					return start, errNotFast
				}
				ev.id = unsafe.String(unsafe.SliceData(s), len(s))
				return end, nil
			case 2:
				end, _, err := jsonscan.Value(data, start)
				if err != nil {
					return end, err
				}
				n, perr := strconv.ParseInt(string(data[jsonscan.SkipSpace(data, start):end]), 10, 64)
				if perr != nil {
					return start, errNotFast
				}
				ev.ts = n
				return end, nil
			case 4:
				at := jsonscan.SkipSpace(data, start)
				from := len(d.cwBuf)
				buf, end, ok := jsonscan.AppendString(d.cwBuf, data, at)
				if !ok {
					return start, errNotFast
				}
				d.cwBuf, ev.msg = buf, [2]int{from, len(buf)}
				return end, nil
			}
			end, _, err := jsonscan.Value(data, start)
			return end, err
		})
		if err != nil {
			return end, err
		}
		d.cw = append(d.cw, ev)
		i = jsonscan.SkipSpace(data, end)
		if i >= len(data) {
			return i, errNotFast
		}
		switch data[i] {
		case ']':
			return i + 1, nil
		case ',':
			i++
		default:
			return i, errNotFast
		}
	}
}

// cloudWatchEvents decodes what fastCloudWatch read, as cloudWatchMessage
// does.
func (d *Decoder) cloudWatchEvents(group, stream, origin string) error {
	if !IsEKSAuditStream(stream) {
		d.skip(origin, "log stream "+stream+" is not an audit log")
		return nil
	}
	cluster := EKSCluster(group)
	for i, ev := range d.cw {
		if err := d.CloudWatchEvent(d.cwBuf[ev.msg[0]:ev.msg[1]:ev.msg[1]], ev.id, ev.ts, cluster,
			d.origin(origin, "logEvents", i)); err != nil {
			return err
		}
	}
	return nil
}

// plainString returns the string value at data[i] (after whitespace) when
// it holds no escape, and the index past it.
func plainString(data []byte, i int) ([]byte, int, bool) {
	i = jsonscan.SkipSpace(data, i)
	if i >= len(data) || data[i] != '"' {
		return nil, i, false
	}
	j := bytes.IndexByte(data[i+1:], '"')
	if j < 0 || bytes.IndexByte(data[i+1:i+1+j], '\\') >= 0 {
		return nil, i, false
	}
	return data[i+1 : i+1+j], i + 2 + j, true
}
