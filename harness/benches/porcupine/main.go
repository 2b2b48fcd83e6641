// Command porcupinebench times Porcupine on its own published histories,
// for harness/benches/checker.rs: the same files, read the same way, timed
// the same way (text parsing excluded, the check from parsed events to a
// verdict included). It calls only Porcupine's exported API; the models and
// parsers are ours, written from the file formats and from the semantics of
// Porcupine's own tests (which are not exported).
//
//	porcupinebench -warmup 3 -reps 3 FILE... < requests
//
// loads every file and checks each once untimed; then, for each path read
// from standard input (one of the files), checks it -warmup times untimed
// and -reps times timed, and prints one line: path, events, verdict, then
// each timed repetition in nanoseconds, comma-separated, tab-separated
// fields. Answering on request lets the caller time its own checker on the
// same file right after, so a drift of the machine's speed falls on both.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

type loaded struct {
	model  porcupine.Model
	events []porcupine.Event
}

func main() {
	warmup := flag.Int("warmup", 3, "untimed checks of a file right before its timed ones")
	reps := flag.Int("reps", 3, "timed checks per request")
	timeout := flag.Duration("timeout", time.Minute, "Porcupine's own timeout per check (unknown past it)")
	flag.Parse()
	histories := map[string]loaded{}
	for _, path := range flag.Args() {
		model, events, err := load(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "porcupinebench: %s: %v\n", path, err)
			os.Exit(2)
		}
		histories[path] = loaded{model, events}
		porcupine.CheckEventsTimeout(model, events, *timeout)
	}
	requests := bufio.NewScanner(os.Stdin)
	for requests.Scan() {
		path := requests.Text()
		h, ok := histories[path]
		if !ok {
			fmt.Fprintf(os.Stderr, "porcupinebench: %s was not loaded\n", path)
			os.Exit(2)
		}
		for i := 0; i < *warmup; i++ {
			porcupine.CheckEventsTimeout(h.model, h.events, *timeout)
		}
		var verdict porcupine.CheckResult
		times := make([]string, 0, *reps)
		for i := 0; i < *reps; i++ {
			started := time.Now()
			verdict = porcupine.CheckEventsTimeout(h.model, h.events, *timeout)
			times = append(times, strconv.FormatInt(time.Since(started).Nanoseconds(), 10))
		}
		fmt.Printf("%s\t%d\t%s\t%s\n", path, len(h.events), describe(verdict), strings.Join(times, ","))
	}
}

func describe(result porcupine.CheckResult) string {
	switch result {
	case porcupine.Ok:
		return "valid"
	case porcupine.Illegal:
		return "invalid"
	default:
		return "unknown"
	}
}

// load picks the model by the file's name: Porcupine's kv logs end in
// .txt, its Jepsen etcd logs in .log.
func load(path string) (porcupine.Model, []porcupine.Event, error) {
	file, err := os.Open(path)
	if err != nil {
		return porcupine.Model{}, nil, err
	}
	defer file.Close()
	var lines []string
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<16), 1<<24)
	for scanner.Scan() {
		lines = append(lines, scanner.Text())
	}
	if err := scanner.Err(); err != nil {
		return porcupine.Model{}, nil, err
	}
	if strings.HasSuffix(path, ".txt") {
		return kvModel, parseKv(lines), nil
	}
	return casModel, parseJepsen(lines), nil
}

// history pairs calls with returns by process, as Porcupine's test parsers
// do: a call still open at the end gets an unknown return there.
type history struct {
	events []porcupine.Event
	open   map[int]int // process -> id of its open call
	inputs map[int]interface{}
}

func newHistory() *history {
	return &history{open: map[int]int{}, inputs: map[int]interface{}{}}
}

func (h *history) call(process int, input interface{}) {
	id := len(h.inputs)
	h.inputs[id] = input
	h.open[process] = id
	h.events = append(h.events, porcupine.Event{ClientId: process, Kind: porcupine.CallEvent, Value: input, Id: id})
}

func (h *history) ret(process int, output interface{}) {
	id, ok := h.open[process]
	if !ok {
		return
	}
	delete(h.open, process)
	h.events = append(h.events, porcupine.Event{ClientId: process, Kind: porcupine.ReturnEvent, Value: output, Id: id})
}

// finish closes every open call, in call order, with `unknown`'s output.
func (h *history) finish(unknown func(input interface{}) interface{}) []porcupine.Event {
	for id := 0; id < len(h.inputs); id++ {
		for process, open := range h.open {
			if open == id {
				h.ret(process, unknown(h.inputs[id]))
			}
		}
	}
	return h.events
}
