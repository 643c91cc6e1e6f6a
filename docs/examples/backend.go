// A switchboard backend in Go: the same behaviour as backend.mjs (see docs/backends.md).
//
// An example for readers, not compiled in CI (the project's machines have no Go):
//
//	go mod init example.com/backend && go get github.com/redis/go-redis/v9
//	SWITCHBOARD_API_KEY=... go run backend.go
//
// connect       -> join room "lobby" (XADD op join), "welcome" {user} (POST /v1/emit)
// "echo" + ack  -> ack ["echo", ...args] (XADD op ack)
// "chat" {text} -> "chat" {from, text} to the lobby but the sender (POST /v1/emit), ack {ok: true} (POST /v1/acks)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

type backend struct {
	rdb    *redis.Client
	http   *http.Client
	api    string // e.g. http://127.0.0.1:8080
	key    string
	prefix string // e.g. sb:
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// bus writes one entry to <prefix>bus; msg is exactly the body of the matching REST call.
func (b *backend) bus(ctx context.Context, op string, msg any) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return b.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: b.prefix + "bus",
		Values: []any{"op", op, "msg", string(body)},
	}).Err()
}

// rest POSTs msg to the REST API; 202 means written to the bus.
func (b *backend) rest(ctx context.Context, path string, msg any) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.api+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.key)
	req.Header.Set("Content-Type", "application/json")
	res, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		text, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("POST %s: %d %s", path, res.StatusCode, text)
	}
	return nil
}

// handle acts on one <prefix>events entry (all fields are strings).
func (b *backend) handle(ctx context.Context, e map[string]any) error {
	field := func(k string) string {
		s, _ := e[k].(string)
		return s
	}
	nsp, sid := field("namespace"), field("socket")
	var args []json.RawMessage
	if err := json.Unmarshal([]byte(field("args")), &args); err != nil {
		return fmt.Errorf("args: %w", err)
	}
	// ack_id is empty when the client asked for no ack.
	ackID, hasAck := int64(0), field("ack_id") != ""
	if hasAck {
		var err error
		if ackID, err = strconv.ParseInt(field("ack_id"), 10, 64); err != nil {
			return fmt.Errorf("ack_id: %w", err)
		}
	}

	switch {
	case field("type") == "connect":
		if err := b.bus(ctx, "join", map[string]any{"namespace": nsp, "rooms": []string{"lobby"}, "sockets": []string{sid}}); err != nil {
			return err
		}
		return b.rest(ctx, "/v1/emit", map[string]any{
			"namespace": nsp, "event": "welcome", "sockets": []string{sid},
			"args": []any{map[string]string{"user": field("user")}},
		})
	case field("type") == "event" && field("event") == "echo" && hasAck:
		reply := append([]any{"echo"}, toAny(args)...)
		return b.bus(ctx, "ack", map[string]any{"socket": sid, "ack_id": ackID, "args": reply})
	case field("type") == "event" && field("event") == "chat":
		var msg struct {
			Text string `json:"text"`
		}
		if len(args) > 0 {
			_ = json.Unmarshal(args[0], &msg) // a malformed message relays an empty text
		}
		err := b.rest(ctx, "/v1/emit", map[string]any{
			"namespace": nsp, "event": "chat", "rooms": []string{"lobby"}, "except_sockets": []string{sid},
			"args": []any{map[string]string{"from": field("user"), "text": msg.Text}},
		})
		if err != nil || !hasAck {
			return err
		}
		return b.rest(ctx, "/v1/acks", map[string]any{"socket": sid, "ack_id": ackID, "args": []any{map[string]bool{"ok": true}}})
	}
	return nil
}

func toAny(raw []json.RawMessage) []any {
	out := make([]any, len(raw))
	for i, r := range raw {
		out[i] = r
	}
	return out
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts, err := redis.ParseURL(env("REDIS_URL", "redis://127.0.0.1:6379"))
	if err != nil {
		log.Fatal(err)
	}
	b := &backend{
		rdb:    redis.NewClient(opts), // a pool: the blocking read does not hold up the writes
		http:   &http.Client{Timeout: 5 * time.Second},
		api:    env("API_URL", "http://127.0.0.1:8080"),
		key:    os.Getenv("SWITCHBOARD_API_KEY"),
		prefix: env("SWITCHBOARD_REDIS_PREFIX", "sb:"),
	}
	defer b.rdb.Close()
	if b.key == "" {
		log.Fatal("set SWITCHBOARD_API_KEY")
	}
	host, _ := os.Hostname()
	stream, group := b.prefix+"events", env("GROUP", "chat-backend")
	consumer := env("CONSUMER", fmt.Sprintf("%s-%d", host, os.Getpid()))

	// '$': from now on; MKSTREAM: fine before the first client. BUSYGROUP: it exists, join it.
	if err := b.rdb.XGroupCreateMkStream(ctx, stream, group, "$").Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		log.Fatal(err)
	}
	log.Printf("backend ready: group %s, consumer %s, stream %s", group, consumer, stream)

	for ctx.Err() == nil {
		streams, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: 100, Block: 5 * time.Second,
		}).Result()
		if errors.Is(err, redis.Nil) || ctx.Err() != nil {
			continue // nothing new within Block, or stopping
		}
		if err != nil {
			log.Printf("XREADGROUP: %v", err)
			time.Sleep(time.Second)
			continue
		}
		for _, s := range streams {
			for _, m := range s.Messages {
				if err := b.handle(ctx, m.Values); err != nil {
					// Left pending: XPENDING shows it, XAUTOCLAIM can hand it to another consumer.
					log.Printf("entry %s: %v", m.ID, err)
					continue
				}
				if err := b.rdb.XAck(ctx, stream, group, m.ID).Err(); err != nil {
					log.Printf("XACK %s: %v", m.ID, err)
				}
			}
		}
	}
	log.Print("backend stopped")
}
