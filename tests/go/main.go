// A third client of hostd's API, in Go, from the stubs protoc makes of proto/hostd.proto
// (protoc-gen-go, protoc-gen-go-grpc; generated at test time as hostdtest/hostdpb, never
// committed). tests/integration/test_go_client.py builds it with Debian's Go packages and runs
// it against a real hostd.
//
// It starts a dyno, follows the event stream, disconnects, lets events happen while it is away,
// resumes with `since` set to the last number it saw, cancels one of two log follows on one
// connection while the other goes on, and stops the dyno. It prints what it saw as one JSON
// object on stdout, for the Python test to check; on a failure it prints the step and the
// error on stderr and exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	pb "hostdtest/hostdpb"
)

type event struct {
	Seq   uint64 `json:"seq"`
	Dyno  string `json:"dyno"`
	State string `json:"state"`
	Kind  string `json:"kind"`
}

type report struct {
	Started           string  `json:"started"`     // the state Start answered
	LastBeforeLeaving uint64  `json:"last_before"` // the last seq seen before disconnecting
	FirstAfterResume  uint64  `json:"first_after"` // the first seq the resumed stream gave
	Events            []event `json:"events"`      // every event seen, in order
	CancelledCode     string  `json:"cancelled"`   // how the cancelled follow ended
	OtherTicks        []int   `json:"other_ticks"` // ticks the other follow got after the cancel
	ListAfterCancel   int     `json:"list_after"`  // dynos ListDynos gave after the cancel
	Stopped           string  `json:"stopped"`     // the state Stop answered
	StoppedSignal     int32   `json:"stop_signal"` // the main process's signal
	NotFoundCode      string  `json:"not_found"`   // GetDyno of an unknown id
	NotFoundMessage   string  `json:"not_found_msg"`
}

const wait = 30 * time.Second

var socketPath = flag.String("socket", "", "hostd's Unix socket")

func dial() (*grpc.ClientConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return grpc.DialContext(ctx, "passthrough:///hostd", grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", *socketPath)
		}))
}

func fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "go client: %s: %v\n", step, err)
	os.Exit(1)
}

// recvUntil reads the event stream into seen until done(seen) holds.
func recvUntil(s pb.Hostd_SubscribeEventsClient, seen *[]event, done func([]event) bool) error {
	for !done(*seen) {
		r, err := s.Recv()
		if err != nil {
			return err
		}
		e := r.GetEvent()
		*seen = append(*seen, event{Seq: e.GetSeq(), Dyno: e.GetDynoId(),
			State: e.GetState().String(), Kind: e.GetKind().String()})
	}
	return nil
}

func has(dyno, state string) func([]event) bool {
	return func(seen []event) bool {
		for _, e := range seen {
			if e.Dyno == dyno && e.State == state {
				return true
			}
		}
		return false
	}
}

func spec(id, name, command, stack, slug string) *pb.DynoSpec {
	return &pb.DynoSpec{Id: id, Name: name, App: "goapp", Type: pb.DynoType_DYNO_TYPE_WORKER,
		Size: "standard-1x", Command: command, StackPath: stack, SlugPath: slug}
}

// ticks reads a log follow until it has n "tick N" lines, or fails.
func ticks(s pb.Hostd_LogsClient, n int) ([]int, error) {
	var got []int
	for len(got) < n {
		r, err := s.Recv()
		if err != nil {
			return got, err
		}
		for _, l := range r.GetLines() {
			var t int
			if _, err := fmt.Sscanf(string(l.GetText()), "tick %d", &t); err == nil {
				got = append(got, t)
			}
		}
	}
	return got, nil
}

func main() {
	id := flag.String("id", "go-1", "the dyno's id")
	stack := flag.String("stack", "", "the stack folder")
	slug := flag.String("slug", "", "the slug folder")
	flag.Parse()
	var rep report
	var seen []event
	ticker := "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done"

	// 1. Follow the events, start the dyno, read until it is up.
	connA, err := dial()
	if err != nil {
		fail("dial", err)
	}
	a := pb.NewHostdClient(connA)
	ctxA, cancelA := context.WithCancel(context.Background())
	evA, err := a.SubscribeEvents(ctxA, &pb.SubscribeEventsRequest{Follow: true})
	if err != nil {
		fail("SubscribeEvents", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	started, err := a.Start(ctx, &pb.StartRequest{Spec: spec(*id, "worker.1", ticker, *stack, *slug)})
	cancel()
	if err != nil {
		fail("Start", err)
	}
	rep.Started = started.GetDyno().GetState().String()
	if err := recvUntil(evA, &seen, has(*id, "DYNO_STATE_UP")); err != nil {
		fail("events until up", err)
	}
	rep.LastBeforeLeaving = seen[len(seen)-1].Seq

	// 2. Disconnect with the stream open; a second dyno starts while this client is away.
	cancelA()
	connA.Close()
	connB, err := dial()
	if err != nil {
		fail("dial again", err)
	}
	defer connB.Close()
	b := pb.NewHostdClient(connB)
	other := *id + "-away"
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	_, err = b.Start(ctx, &pb.StartRequest{Spec: spec(other, "worker.2", "sleep 1000", *stack, *slug)})
	cancel()
	if err != nil {
		fail("Start while away", err)
	}

	// 3. Resume after the last seq seen: what happened while away, then live events (the
	// second dyno's stop).
	ctxR, cancelR := context.WithCancel(context.Background())
	defer cancelR()
	evB, err := b.SubscribeEvents(ctxR, &pb.SubscribeEventsRequest{Since: rep.LastBeforeLeaving,
		Follow: true})
	if err != nil {
		fail("SubscribeEvents since", err)
	}
	n := len(seen)
	if err := recvUntil(evB, &seen, has(other, "DYNO_STATE_UP")); err != nil {
		fail("resumed events", err)
	}
	rep.FirstAfterResume = seen[n].Seq
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	_, err = b.Stop(ctx, &pb.StopRequest{Id: other, Grace: &pb.StopRequest_GraceSeconds{GraceSeconds: 1}})
	cancel()
	if err != nil {
		fail("Stop while following", err)
	}
	if err := recvUntil(evB, &seen, has(other, "DYNO_STATE_DOWN")); err != nil {
		fail("live events", err)
	}
	rep.Events = seen

	// 4. Two log follows on one connection: cancel one, the other goes on.
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	f1, err := b.Logs(ctx1, &pb.LogsRequest{Id: *id, Follow: true})
	if err != nil {
		fail("Logs 1", err)
	}
	f2, err := b.Logs(ctx2, &pb.LogsRequest{Id: *id, Follow: true})
	if err != nil {
		fail("Logs 2", err)
	}
	if _, err := ticks(f1, 1); err != nil {
		fail("follow 1", err)
	}
	if _, err := ticks(f2, 1); err != nil {
		fail("follow 2", err)
	}
	cancel1()
	for {
		_, err := f1.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				rep.CancelledCode = "EOF"
			} else {
				rep.CancelledCode = status.Code(err).String()
			}
			break
		}
	}
	if rep.OtherTicks, err = ticks(f2, 10); err != nil {
		fail("the other follow after the cancel", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	list, err := b.ListDynos(ctx, &pb.ListDynosRequest{})
	cancel()
	if err != nil {
		fail("ListDynos", err)
	}
	rep.ListAfterCancel = len(list.GetDynos())
	cancel2()

	// 5. An error, as a Go client sees it; then stop the dyno.
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	_, err = b.GetDyno(ctx, &pb.GetDynoRequest{Id: "no-such-" + *id})
	cancel()
	rep.NotFoundCode = status.Code(err).String()
	if s, ok := status.FromError(err); ok {
		rep.NotFoundMessage = s.Message()
	}
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	stopped, err := b.Stop(ctx, &pb.StopRequest{Id: *id, Grace: &pb.StopRequest_GraceSeconds{GraceSeconds: 2}})
	cancel()
	if err != nil {
		fail("Stop", err)
	}
	rep.Stopped = stopped.GetDyno().GetState().String()
	rep.StoppedSignal = stopped.GetDyno().GetExit().GetSignal()

	out, err := json.Marshal(rep)
	if err != nil {
		fail("report", err)
	}
	fmt.Println(string(out))
}
