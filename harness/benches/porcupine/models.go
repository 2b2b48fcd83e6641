package main

import (
	"hash/fnv"
	"sort"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"
)

// kvInput is one append-kv call: op is 'g' (get), 'p' (put) or 'a' (append).
type kvInput struct {
	op    byte
	key   string
	value string
}

// kvOutput is a get's answer; unknown when the call never returned, so
// any value is allowed (never the case in the published logs).
type kvOutput struct {
	value   string
	unknown bool
}

// kvModel is one string per key, checked per key (Porcupine's partitions),
// with a state hash, Porcupine's fast path for its cache.
var kvModel = porcupine.Model{
	PartitionEvent: partitionByKey,
	Init:           func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(string), input.(kvInput), output.(kvOutput)
		switch in.op {
		case 'g':
			return out.unknown || out.value == st, st
		case 'p':
			return true, in.value
		default:
			return true, st + in.value
		}
	},
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
}

func partitionByKey(events []porcupine.Event) [][]porcupine.Event {
	byKey := map[string][]porcupine.Event{}
	keyOf := map[int]string{}
	for _, e := range events {
		if e.Kind == porcupine.CallEvent {
			keyOf[e.Id] = e.Value.(kvInput).key
		}
		key := keyOf[e.Id]
		byKey[key] = append(byKey[key], e)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	partitions := make([][]porcupine.Event, 0, len(keys))
	for _, k := range keys {
		partitions = append(partitions, byKey[k])
	}
	return partitions
}

// field is the text after `name` up to the next ',' or '}', in a line like
// {:process 6, :type :invoke, :f :append, :key "0", :value "x 6 0 y"}.
func field(line, name string) (string, bool) {
	start := strings.Index(line, name)
	if start < 0 {
		return "", false
	}
	rest := line[start+len(name):]
	end := strings.IndexAny(rest, ",}")
	if end < 0 {
		return "", false
	}
	return strings.TrimSpace(rest[:end]), true
}

// parseKv keeps invocations and ok completions of get, put and append, as
// Porcupine's kv test parser does; other lines take no part.
func parseKv(lines []string) []porcupine.Event {
	h := newHistory()
	ops := map[string]byte{"get": 'g', "put": 'p', "append": 'a'}
	for _, line := range lines {
		var text [5]string
		found := true
		for i, name := range []string{":process ", ":type :", ":f :", ":key ", ":value "} {
			value, ok := field(line, name)
			text[i], found = value, found && ok
		}
		proc, err := strconv.Atoi(text[0])
		op, known := ops[text[2]]
		if !found || err != nil || !known {
			continue
		}
		key, value := strings.Trim(text[3], `"`), strings.Trim(text[4], `"`)
		switch text[1] {
		case "invoke":
			h.call(proc, kvInput{op: op, key: key, value: value})
		case "ok":
			h.ret(proc, kvOutput{value: value})
		}
	}
	return h.finish(func(interface{}) interface{} { return kvOutput{unknown: true} })
}

// casInput is one etcd register call: op is 'r' (read), 'w' (write a) or
// 'c' (compare a, set b).
type casInput struct {
	op   byte
	a, b int
}

// casOutput: ok is a cas's answer (a Jepsen `:fail` cas did not swap);
// unknown when the call timed out or never returned.
type casOutput struct {
	ok      bool
	exists  bool
	value   int
	unknown bool
}

type casState struct {
	exists bool
	value  int
}

var casModel = porcupine.Model{
	Init: func() interface{} { return casState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(casState), input.(casInput), output.(casOutput)
		switch in.op {
		case 'r':
			return out.unknown || out.exists == st.exists && out.value == st.value, st
		case 'w':
			return true, casState{exists: true, value: in.a}
		default:
			matches := st.exists && st.value == in.a
			next := st
			if matches {
				next = casState{exists: true, value: in.b}
			}
			return out.unknown || out.ok == matches, next
		}
	},
	Hash: func(state interface{}) uint64 {
		st := state.(casState)
		if !st.exists {
			return 0
		}
		return uint64(st.value)*2 + 1
	},
}

// parseJepsen reads lines like `INFO  jepsen.util - 3	:ok	:cas	[3 0]`
// with the semantics of Porcupine's Jepsen test parser: an ok or fail cas
// returned whether it swapped; a read that failed (timed out) returns an
// unknown value; `:info` lines are skipped, so their calls stay open and
// get an unknown return at the end.
func parseJepsen(lines []string) []porcupine.Event {
	h := newHistory()
	for _, line := range lines {
		fields := strings.Fields(line)
		if len(fields) < 7 || fields[1] != "jepsen.util" {
			continue
		}
		proc, err := strconv.Atoi(fields[3])
		if err != nil {
			continue
		}
		kind, f, args := fields[4], fields[5], fields[6:]
		switch {
		case kind == ":invoke" && f == ":read":
			h.call(proc, casInput{op: 'r'})
		case kind == ":invoke" && f == ":write":
			h.call(proc, casInput{op: 'w', a: number(args[0])})
		case kind == ":invoke" && f == ":cas" && len(args) == 2:
			h.call(proc, casInput{op: 'c', a: number(args[0]), b: number(args[1])})
		case kind == ":ok" && f == ":read":
			h.ret(proc, casOutput{exists: args[0] != "nil", value: number(args[0])})
		case kind == ":ok" && f == ":write":
			h.ret(proc, casOutput{})
		case (kind == ":ok" || kind == ":fail") && f == ":cas":
			h.ret(proc, casOutput{ok: kind == ":ok"})
		case kind == ":fail" && f == ":read":
			h.ret(proc, casOutput{unknown: true})
		}
	}
	return h.finish(func(interface{}) interface{} { return casOutput{unknown: true} })
}

// number reads `3`, `[3` or `0]`; nil reads as 0 (with exists false).
func number(text string) int {
	n, _ := strconv.Atoi(strings.Trim(text, "[]"))
	return n
}
