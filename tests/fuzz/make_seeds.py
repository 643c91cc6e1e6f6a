#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

The seeds are committed; this script says how they were made and remakes them
(python3 tests/fuzz/make_seeds.py). Each seed is small and stands for one
shape of valid or nearly valid input, so the fuzzer starts from the protocol
rather than from nothing.

fuzz_ws input format (see fuzz_ws.c): byte 0 is a control byte (bit 0: turn the
rest into masked frames itself; bits 1-2: what the server does with a message;
bit 5: 64-byte message limit; bit 6: 32-byte send queue; bit 7: the server
closes first); with bit 0 clear the rest is the raw byte stream a client sends,
so those seeds are real client frames, masked as RFC 6455 5.3 requires.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- Engine.IO: text packets, polling payloads (0x1e-separated), handshake queries ----
EIO = {
    "open": '0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000}',
    "ping_probe": "2probe",
    "pong": "3",
    "message": '4{"a":1}',
    "payload": "4hello\x1e4world\x1ebAQID",
    "payload_types": "2\x1e1\x1e6\x1eb\x1e4/chat,\x1eb/w==",
    "payload_tiny_many": "\x1e".join(["6"] * 40 + ["4x"] * 20),
    "payload_empty_parts": "4\x1e\x1e4",
    "payload_base64_pad": "bAA==\x1ebAAA=\x1ebAAAA\x1eb////",
    "payload_base64_bad": "bA===\x1eb!!!!\x1ebA",
    "payload_utf8": "4€😀\x1e42[\"é\"]",
    "query": "EIO=4&transport=polling&t=N8hyd6w&sid=ab%2Dc+d&b64=1",
    "query_ws": "EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
    "query_dup": "EIO=3&EIO=4&transport=polling&transport=websocket&&&=&x",
    "query_badpct": "EIO=%zz&sid=%4",
    "query_pct_nul": "EIO=4%00&transport=poll%69ng&sid=%ff%fe",
}
for name, data in EIO.items():
    write("fuzz_engineio", name, data)

# ---- Socket.IO packets (the Engine.IO message payload) ----
PH0 = '{"_placeholder":true,"num":0}'
PH1 = '{"_placeholder":true,"num":1}'
SIO = {
    "connect": "0",
    "connect_nsp": '0/chat,{"token":"x"}',
    "connect_auth_nested": '0{"a":{"b":[1,{"c":null}]}}',
    "disconnect": "1/chat,",
    "event": '2["e",1,{"a":[2]}]',
    "event_ack": '2/chat,7["e","\\u0000",-1.5e3,null,true]',
    "event_unicode": '2["\\ud83d\\ude00","€",{"k\\n":"\\""}]',
    "event_deep": "2[\"e\"," + "[" * 64 + "]" * 64 + "]",
    "event_bad_name": '2[{"toString":"x"},null]',
    "ack": "3/chat,5[]",
    "connect_error": '4{"message":"x"}',
    "bin_event": "52-/x,9[\"e\",{\"a\":[" + PH1 + "]}," + PH0 + "]",
    "bin_ack": "61-/chat,3[" + PH0 + "]",
    "bin_zero": "50-[\"e\"," + PH0 + "]",
    "bin_twice": "51-[\"e\"," + PH0 + "," + PH0 + "]",
    "bin_big_count": "5999999-[\"e\"," + PH0 + "]",
    "dollar_binary": '2["e",{"$binary":"AQID"},' + PH0 + "]",
    "dollar_binary_lookalike": '2["",{"h\\"$binary":5}]',  # a key that only looks like "$binary" in the text
    "ack_id_big": '218446744073709551616["e"]',
}
for name, data in SIO.items():
    write("fuzz_socketio", name, data)


# ---- WebSocket: raw client byte streams (control byte 0x00 = echo, raw) ----
def frame(opcode, payload=b"", fin=True, rsv=0, mask=b"\x37\xfa\x21\x3d", masked=True, lenbytes=None):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if masked else 0
    enc = lenbytes if lenbytes is not None else (0 if n < 126 else 2 if n <= 0xFFFF else 8)
    if enc == 0:
        head = bytes([b0, m | n])
    elif enc == 2:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    body = bytes(c ^ mask[i & 3] for i, c in enumerate(payload))
    return head + mask + body


TEXT, BIN, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
raw = {
    "text": frame(TEXT, '42["e",1]'),
    "binary": frame(BIN, b"\x01\x02\x03"),
    "two_messages": frame(TEXT, "40") + frame(TEXT, '42["e"]'),
    "fragmented_ping_between": frame(TEXT, "he", fin=False) + frame(PING, "p") + frame(CONT, "llo"),
    "utf8_split": frame(TEXT, b"4\xe2\x82", fin=False) + frame(CONT, b"\xac\xf0\x9f", fin=False)
    + frame(CONT, b"\x98\x80"),
    "len16": frame(TEXT, "x" * 300),
    "len64_header_only": frame(BIN, b"\x00" * 70000)[:20],
    "ping_pong": frame(PING, "abc") + frame(PONG, ""),
    "close_1000": frame(CLOSE, b"\x03\xe8bye"),
    "close_empty": frame(CLOSE),
    "close_bad_code": frame(CLOSE, b"\x03\xed"),
    "close_bad_utf8": frame(CLOSE, b"\x03\xe8\xff"),
    "text_bad_utf8": frame(TEXT, b"4\xc0\xaf"),
    "rsv1": frame(TEXT, "x", rsv=4),
    "opcode3": frame(3, "x"),
    "unmasked": frame(TEXT, "x", masked=False),
    "ping_126": frame(PING, b"a" * 126),
    "cont_first": frame(CONT, "x"),
    "nonminimal_len": frame(TEXT, "abc", lenbytes=2),
    "after_close": frame(CLOSE, b"\x03\xe8") + frame(TEXT, "late"),
}
for name, data in raw.items():
    write("fuzz_ws", "raw_" + name, b"\x00" + data)
# Same streams with the other server behaviours and limits.
write("fuzz_ws", "raw_text_close_on_message", b"\x02" + raw["text"])
write("fuzz_ws", "raw_text_send3", b"\x04" + raw["two_messages"])
write("fuzz_ws", "raw_len16_small_limit", b"\x20" + raw["len16"])
write("fuzz_ws", "raw_send3_small_queue", b"\x44" + raw["two_messages"] + raw["text"])
write("fuzz_ws", "raw_server_closes_first", b"\x80" + raw["text"] + raw["close_1000"])


# Structured mode (control bit 0): [b0][len][payload]..., the target masks them itself.
def structured(*frames):
    out = b""
    for b0, payload in frames:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        out += bytes([b0, len(payload)]) + payload
    return out


# b0 without bit 6: opcode from the low 3 bits (0 cont, 1 text, 2 binary, 3 close, 4 ping, 5 pong), FIN from bit 7.
write("fuzz_ws", "st_text", b"\x01" + structured((0x81, '42["e"]')))
write("fuzz_ws", "st_fragments", b"\x01" + structured((0x01, "ab"), (0x84, "p"), (0x80, "cd")))
write("fuzz_ws", "st_close", b"\x01" + structured((0x81, "x"), (0x83, b"\x03\xe8")))
write("fuzz_ws", "st_raw_b0", b"\x01" + structured((0x41, "x"), (0xC1, "y")))

# fuzz_json: the flat objects of a handshake, and near misses jansson must judge.
json_seeds = {
    "connect_token": '{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln"}',
    "connect_room": '{"room":"bench","token":"abc"}',
    "jwt_header": '{"alg":"HS256","typ":"JWT"}',
    "jwt_claims": '{"sub":"u1","iat":1795849779,"exp":1795853379,"join":["bench"],"rooms":["a","b"]}',
    "spaces": ' { "a" : [ 1 , -2 , true , false , null ] , "b" : "" } ',
    "dup": '{"a":1,"a":2}',
    "empty": '{}',
    "nested": '{"a":{"b":1}}',
    "escape": '{"a":"\\u00e9"}',
    "utf8": '{"a":"\u00e9"}',
    "real": '{"a":1.5,"b":1e3}',
    "big": '{"a":123456789012345678901}',
    "lead0": '{"a":01}',
    "trailing": '{"a":1} x',
    "array_nested": '{"a":[[1]]}',
}
for name, text in json_seeds.items():
    write("fuzz_json", name, text)

print("seeds written under", CORPUS)
