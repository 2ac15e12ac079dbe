#!/usr/bin/env node
// One police officer driven by the Element client stack (matrix-js-sdk 43 + Rust crypto),
// controlled by a Python test (officer_client.py) over a line-based JSON protocol.
//
//   node officer.mjs --homeserver http://127.0.0.1:PORT --user @name:server --password PW
//                    [--log-level trace|debug|info|warn|error|silent]   (default info)
//                    [--initial-device-display-name NAME]               (default interop-officer)
//                    [--hold-after-login]
//                    [--sync-timeline-limit N]
//        each sync asks for up to N events of a room's timeline (Synapse's default is 10): a burst larger than
//        that (a backlog sent at once after an outage) then has no gap, which Element fills by paging back as the
//        officer scrolls and this script would not
//        log in (the homeserver now has the new device), report "logged_in", and start the client
//        (crypto, key upload, sync) only on {"cmd":"resume"}: a test can then make something happen
//        between the sign-in and the moment the device's keys exist, as happens while Element starts.
//
// Only the given homeserver is ever contacted (fetch refuses any other origin). Fresh login,
// in-memory crypto store: every run is a new device.
//
// stdout: one JSON object per line and nothing else; all logging goes to stderr.
//   {"event":"logged_in","user_id","device_id"}
//        (--hold-after-login only) the device exists, its keys are not uploaded, nothing syncs yet
//   {"event":"ready","user_id","device_id"}
//        first sync done, Rust crypto initialised, our device keys visible on the homeserver
//   {"event":"joined","room_id"}
//        joined a room we were invited to (invites are accepted automatically)
//   {"event":"message","room_id","event_id","sender","ts","body","msgtype","encrypted",
//    "shield_colour","shield_reason","sender_device_id","sender_curve25519","sender_ed25519"}
//        an m.room.message from another user, decrypted if it was encrypted; ts: its origin_server_ts.
//        shield_colour: EventShieldColour from CryptoApi.getEncryptionInfoForEvent
//        (0 NONE, 1 GREY, 2 RED; null for unencrypted events); shield_reason: EventShieldReason
//        name ("UNSIGNED_DEVICE", "UNVERIFIED_IDENTITY", "UNKNOWN_DEVICE",
//        "AUTHENTICITY_NOT_GUARANTEED", "VERIFICATION_VIOLATION", "MISMATCHED_SENDER", ...) or null;
//        sender_device_id: the device the Rust crypto attributes the megolm session to
//        (EncryptionInfo.senderDevice, found by the session's Curve25519 key, not the
//        event's self-declared device_id); sender_curve25519 / sender_ed25519: the session's keys.
//   {"event":"undecryptable","room_id","event_id","sender","reason"}
//        decryption failed (reason: DecryptionFailureCode, e.g. MEGOLM_UNKNOWN_INBOUND_SESSION_ID);
//        a "message" for the same event_id follows if its key arrives later
//   {"event":"sent","ref","event_id"}            answer to a send command
//   {"event":"error","ref","message"}            a command failed (ref null: bad line, failed auto-join)
//   {"event":"fatal","message"}                  start-up failed (e.g. bad password); exits 1 (2: bad flags)
//   {"event":"stopped"}                          last line before a clean exit 0
// stdin: one JSON object per line (commands that arrive before "ready" wait for it)
//   {"cmd":"send","room_id","body","ref"}   send an m.text (encrypted by the SDK in encrypted rooms)
//   {"cmd":"shield","room_id","event_id","ref"}
//        re-evaluate a received message's shield once the sender's devices are downloaded, as
//        Element's timeline does when device info arrives (a message can decrypt before that, and
//        then reads UNKNOWN_DEVICE for a moment); answers
//        {"event":"shield","ref","event_id","shield_colour","shield_reason","sender_device_id"}
//   {"cmd":"resume"}                        (--hold-after-login) go on with the start-up
//   {"cmd":"stop"}                          stop the client and exit 0; EOF on stdin and SIGTERM too

import { parseArgs } from "node:util";
import { createInterface } from "node:readline";

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function log(...args) {
    process.stderr.write(`[officer] ${args.join(" ")}\n`);
}

// ---------------------------------------------------------------- configuration
const LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, silent: 5 };
let args;
try {
    ({ values: args } = parseArgs({
        options: {
            homeserver: { type: "string" },
            user: { type: "string" },
            password: { type: "string" },
            "log-level": { type: "string", default: "info" },
            "initial-device-display-name": { type: "string", default: "interop-officer" },
            "hold-after-login": { type: "boolean", default: false },
            "sync-timeline-limit": { type: "string" },
        },
        strict: true,
    }));
    for (const required of ["homeserver", "user", "password"]) {
        if (!args[required]) throw new Error(`--${required} is required`);
    }
    if (args["sync-timeline-limit"] !== undefined && !(Number(args["sync-timeline-limit"]) > 0)) {
        throw new Error("--sync-timeline-limit must be a positive number");
    }
    if (!(args["log-level"] in LEVELS)) throw new Error(`--log-level must be one of ${Object.keys(LEVELS)}`);
    new URL(args.homeserver);
} catch (err) {
    emit({ event: "fatal", message: `bad arguments: ${err.message}` });
    process.exit(2);
}

// ---------------------------------------------------------------- stdout is the protocol channel
// Anything the SDK (or a dependency) logs must not reach stdout, so every console method goes
// to stderr (filtered by --log-level) and protocol lines are written with process.stdout.write.
// This is installed before the SDK is imported, so loglevel (the SDK's logger) binds to it.
const minLevel = LEVELS[args["log-level"]];
const consoleLevels = { trace: 0, debug: 1, log: 2, info: 2, warn: 3, error: 4 };
for (const [name, level] of Object.entries(consoleLevels)) {
    console[name] = (...parts) => {
        if (level < minLevel) return;
        const text = parts
            .map((a) => (typeof a === "string" ? a : a instanceof Error ? a.stack || String(a) : inspectSafe(a)))
            .join(" ");
        process.stderr.write(`[${name}] ${text}\n`);
    };
}

function inspectSafe(value) {
    try {
        return JSON.stringify(value);
    } catch {
        return String(value);
    }
}

process.on("uncaughtException", (err) => {
    log(`uncaught exception: ${err?.stack ?? err}`);
    emit({ event: "fatal", message: `uncaught exception: ${err?.message ?? err}` });
    process.exit(1);
});

// ---------------------------------------------------------------- polyfills (before the SDK loads)
// Node 20 has no Promise.withResolvers; matrix-js-sdk 43 calls it after the first sync.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve;
        let reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}
await import("fake-indexeddb/auto");
const sdk = await import("matrix-js-sdk");
const { EventShieldReason } = await import("matrix-js-sdk/lib/crypto-api/index.js");
const { ClientEvent, RoomEvent, MatrixEventEvent, EventType, MsgType, KnownMembership } = sdk;

const homeserverUrl = args.homeserver.replace(/\/+$/, "");
const homeserverOrigin = new URL(homeserverUrl).origin;

// Never talk to anything but the homeserver we were given: every HTTP request the SDK makes
// goes through this fetch, which refuses other origins.
const realFetch = globalThis.fetch;
function guardedFetch(input, init) {
    const raw = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const origin = new URL(raw, homeserverUrl).origin;
    if (origin !== homeserverOrigin) {
        log(`refusing request to ${raw}: only ${homeserverOrigin} may be contacted`);
        return Promise.reject(new Error(`officer.mjs only contacts ${homeserverOrigin}, not ${origin}`));
    }
    return realFetch(input, init);
}

// ---------------------------------------------------------------- state
let client = null;
let stopping = false;
const joinedRooms = new Set(); // room IDs for which "joined" was emitted
const joiningRooms = new Set();
const reportedMessages = new Set(); // event IDs for which "message" was emitted
const reportedUndecryptable = new Set(); // event IDs for which "undecryptable" was emitted
const seenEvents = new Set(); // event IDs handled from the timeline

// ---------------------------------------------------------------- helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function shieldReasonName(reason) {
    if (reason === null || reason === undefined) return null;
    return EventShieldReason[reason] ?? String(reason); // e.g. "UNSIGNED_DEVICE"
}

// The device that sent an event, as the Rust crypto stack determined it when decrypting.
// CryptoApi.getEncryptionInfoForEvent() only returns the shield, so read the rest of the Rust
// EncryptionInfo (senderDevice) from the OlmMachine; if that is not reachable, fall back to the
// device of the sender whose Curve25519 key matches the event's session.
async function senderDeviceOf(event) {
    const crypto = client.getCrypto();
    const olmMachine = crypto?.olmMachine;
    if (olmMachine && typeof olmMachine.getRoomEventEncryptionInfo === "function") {
        try {
            const { RoomId } = await import("@matrix-org/matrix-sdk-crypto-wasm");
            const info = await olmMachine.getRoomEventEncryptionInfo(
                JSON.stringify({
                    event_id: event.getId(),
                    type: event.getWireType(),
                    sender: event.getSender(),
                    state_key: event.getStateKey(),
                    content: event.getWireContent(),
                    origin_server_ts: event.getTs(),
                }),
                new RoomId(event.getRoomId()),
            );
            if (info) {
                const deviceId = info.senderDevice?.toString() ?? null;
                const curve = info.senderCurve25519Key ?? null;
                const ed = info.senderClaimedEd25519Key ?? null;
                info.free?.();
                if (deviceId) return { deviceId, curve, ed };
            }
        } catch (err) {
            log(`getRoomEventEncryptionInfo failed for ${event.getId()}: ${err}`);
        }
    }
    const curve = event.getSenderKey() ?? null;
    const ed = event.getClaimedEd25519Key() ?? null;
    let deviceId = null;
    if (curve && crypto) {
        try {
            const devices = await crypto.getUserDeviceInfo([event.getSender()]);
            for (const device of devices.get(event.getSender())?.values() ?? []) {
                if (device.getIdentityKey() === curve) deviceId = device.deviceId;
            }
        } catch (err) {
            log(`getUserDeviceInfo failed: ${err}`);
        }
    }
    return { deviceId, curve, ed };
}

async function reportEvent(event) {
    if (stopping) return;
    const eventId = event.getId();
    if (!eventId || eventId.startsWith("~")) return; // local echo
    if (event.getSender() === client.getUserId()) return;
    if (reportedMessages.has(eventId)) return;

    if (event.isDecryptionFailure()) {
        if (!reportedUndecryptable.has(eventId)) {
            reportedUndecryptable.add(eventId);
            emit({
                event: "undecryptable",
                room_id: event.getRoomId(),
                event_id: eventId,
                sender: event.getSender(),
                reason: event.decryptionFailureReason ?? event.getContent()?.body ?? "unknown",
            });
        }
        return;
    }
    if (event.getType() !== EventType.RoomMessage) return;
    const content = event.getContent();
    if (!content || typeof content.msgtype !== "string") return; // redacted or malformed

    const encrypted = event.isEncrypted();
    let shieldColour = null;
    let shieldReason = null;
    let sender = { deviceId: null, curve: null, ed: null };
    if (encrypted) {
        const info = await client.getCrypto().getEncryptionInfoForEvent(event);
        if (info) {
            shieldColour = info.shieldColour;
            shieldReason = shieldReasonName(info.shieldReason);
        }
        sender = await senderDeviceOf(event);
    }
    if (reportedMessages.has(eventId)) return; // raced with another report of the same event
    reportedMessages.add(eventId);
    emit({
        event: "message",
        room_id: event.getRoomId(),
        event_id: eventId,
        sender: event.getSender(),
        ts: event.getTs(),
        body: content.body ?? null,
        msgtype: content.msgtype,
        encrypted,
        shield_colour: shieldColour,
        shield_reason: shieldReason,
        sender_device_id: sender.deviceId,
        sender_curve25519: sender.curve,
        sender_ed25519: sender.ed,
    });
}

async function onTimelineEvent(event, room, toStartOfTimeline) {
    if (toStartOfTimeline) return; // back-pagination
    const eventId = event.getId();
    if (!eventId || seenEvents.has(eventId)) return;
    seenEvents.add(eventId);
    try {
        await client.decryptEventIfNeeded(event);
        await reportEvent(event);
    } catch (err) {
        log(`handling ${eventId} failed: ${err?.stack ?? err}`);
    }
}

async function joinRoom(roomId) {
    if (joinedRooms.has(roomId) || joiningRooms.has(roomId)) return;
    joiningRooms.add(roomId);
    try {
        for (let attempt = 1; !stopping; attempt++) {
            try {
                await client.joinRoom(roomId);
                break;
            } catch (err) {
                if (attempt >= 5) throw err;
                log(`join ${roomId} attempt ${attempt} failed: ${err}; retrying`);
                await sleep(500 * attempt);
            }
        }
        markJoined(roomId);
    } catch (err) {
        emit({ event: "error", ref: null, message: `joining ${roomId} failed: ${err?.message ?? err}` });
    } finally {
        joiningRooms.delete(roomId);
    }
}

function markJoined(roomId) {
    if (stopping || joinedRooms.has(roomId)) return;
    joinedRooms.add(roomId);
    void announceJoined(roomId);
}

// "joined" means what it means to a person in Element: the room is in the client, and if it is
// encrypted the crypto has taken its encryption settings, so a message can be sent at once. (The
// join request returns before the sync brings the room's state; sending then fails with "Cannot
// encrypt event in unconfigured room".)
async function announceJoined(roomId) {
    const deadline = Date.now() + 60_000;
    while (!stopping && Date.now() < deadline) {
        const room = client.getRoom(roomId);
        if (room && room.getMyMembership() === KnownMembership.Join) {
            const encrypted = room.currentState.getStateEvents("m.room.encryption", "");
            if (!encrypted || await client.getCrypto().isEncryptionEnabledInRoom(roomId)) break;
        }
        await sleep(100);
    }
    if (!stopping) emit({ event: "joined", room_id: roomId });
}

function onMyMembership(room, membership) {
    if (membership === KnownMembership.Invite) {
        void joinRoom(room.roomId);
    } else if (membership === KnownMembership.Join && !joiningRooms.has(room.roomId)) {
        // e.g. joined by the sync before our join request returned; harmless if already reported
        markJoined(room.roomId);
    }
}

// The homeserver must know our device keys before anyone can encrypt for us.
async function waitForOwnKeysOnServer(userId, deviceId) {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
        const res = await client.http.authedRequest(sdk.Method.Post, "/keys/query", undefined, {
            device_keys: { [userId]: [deviceId] },
        });
        const keys = res?.device_keys?.[userId]?.[deviceId];
        if (keys?.keys?.[`curve25519:${deviceId}`]) return;
        await sleep(100);
    }
    throw new Error("device keys did not reach the homeserver within 60 s");
}

// ---------------------------------------------------------------- commands
async function handleCommand(line) {
    line = line.trim();
    if (!line) return;
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (err) {
        emit({ event: "error", ref: null, message: `bad JSON command: ${err.message}` });
        return;
    }
    const ref = cmd?.ref ?? null;
    switch (cmd?.cmd) {
        case "send":
            try {
                if (!client) throw new Error("not ready yet");
                if (typeof cmd.room_id !== "string" || typeof cmd.body !== "string") {
                    throw new Error("send needs string room_id and body");
                }
                const res = await client.sendMessage(cmd.room_id, { msgtype: MsgType.Text, body: cmd.body });
                emit({ event: "sent", ref, event_id: res.event_id });
            } catch (err) {
                emit({ event: "error", ref, message: String(err?.message ?? err) });
            }
            return;
        case "discard_session":
            // Element's /discardsession: the next message in the room goes under a new room key.
            try {
                if (!client) throw new Error("not ready yet");
                await client.getCrypto().forceDiscardSession(cmd.room_id);
                emit({ event: "discarded", ref, room_id: cmd.room_id });
            } catch (err) {
                emit({ event: "error", ref, message: String(err?.message ?? err) });
            }
            return;
        case "shield":
            try {
                if (!client) throw new Error("not ready yet");
                const event = client.getRoom(cmd.room_id)?.findEventById(cmd.event_id);
                if (!event) throw new Error(`no event ${cmd.event_id} in ${cmd.room_id}`);
                await client.getCrypto().getUserDeviceInfo([event.getSender()], true);
                const info = await client.getCrypto().getEncryptionInfoForEvent(event);
                const sender = await senderDeviceOf(event);
                emit({
                    event: "shield", ref, event_id: cmd.event_id,
                    shield_colour: info ? info.shieldColour : null,
                    shield_reason: info ? shieldReasonName(info.shieldReason) : null,
                    sender_device_id: sender.deviceId,
                });
            } catch (err) {
                emit({ event: "error", ref, message: String(err?.message ?? err) });
            }
            return;
        case "stop":
            await shutdown(0);
            return;
        default:
            emit({ event: "error", ref, message: `unknown command: ${JSON.stringify(cmd?.cmd)}` });
    }
}

async function shutdown(code) {
    if (stopping) return;
    stopping = true;
    try {
        client?.stopClient();
    } catch (err) {
        log(`stopClient failed: ${err}`);
    }
    emit({ event: "stopped" });
    // let stdout drain before exiting
    process.stdout.write("", () => process.exit(code));
}

const rl = createInterface({ input: process.stdin, terminal: false });
const commandQueue = [];
let commandsEnabled = false;
let resumeStartUp = null; // set while held after login (--hold-after-login)
rl.on("line", (line) => {
    if (commandsEnabled) void handleCommand(line);
    else if (resumeStartUp && isResume(line)) resumeStartUp();
    else commandQueue.push(line);
});

function isResume(line) {
    try {
        return JSON.parse(line)?.cmd === "resume";
    } catch {
        return false;
    }
}
rl.on("close", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));
process.on("SIGINT", () => void shutdown(0));
process.on("unhandledRejection", (err) => log(`unhandled rejection: ${err?.stack ?? err}`));

// ---------------------------------------------------------------- start-up
async function main() {
    const t0 = Date.now();
    const loginClient = sdk.createClient({ baseUrl: homeserverUrl, fetchFn: guardedFetch });
    const login = await loginClient.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: args.user },
        password: args.password,
        initial_device_display_name: args["initial-device-display-name"],
    });
    loginClient.stopClient();
    log(`logged in as ${login.user_id} device ${login.device_id} (${Date.now() - t0} ms)`);
    if (args["hold-after-login"]) {
        const resumed = new Promise((resolve) => (resumeStartUp = resolve));
        emit({ event: "logged_in", user_id: login.user_id, device_id: login.device_id });
        await resumed;
        resumeStartUp = null;
        log(`resumed after login (${Date.now() - t0} ms)`);
    }

    client = sdk.createClient({
        baseUrl: homeserverUrl,
        fetchFn: guardedFetch,
        userId: login.user_id,
        deviceId: login.device_id,
        accessToken: login.access_token,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    log(`rust crypto initialised (${Date.now() - t0} ms)`);

    client.on(RoomEvent.MyMembership, onMyMembership);
    client.on(RoomEvent.Timeline, (event, room, toStart) => void onTimelineEvent(event, room, toStart));
    client.on(MatrixEventEvent.Decrypted, (event) => {
        // an event we reported as undecryptable got its key later
        if (reportedUndecryptable.has(event.getId()) && !event.isDecryptionFailure()) {
            void reportEvent(event).catch((err) => log(`late report failed: ${err}`));
        }
    });

    // The SDK retries failed syncs by itself; the Python side's deadline covers a homeserver
    // that never answers.
    const firstSync = new Promise((resolve) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") {
                client.off(ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                log(`sync error before first sync: ${data?.error ?? "unknown"}`);
            }
        };
        client.on(ClientEvent.Sync, onSync);
    });
    let filter;
    if (args["sync-timeline-limit"] !== undefined) {
        filter = new sdk.Filter(login.user_id);
        filter.setTimelineLimit(Number(args["sync-timeline-limit"]));
    }
    await client.startClient({ initialSyncLimit: 20, threadSupport: false, filter });
    await firstSync;
    log(`first sync done (${Date.now() - t0} ms)`);
    await waitForOwnKeysOnServer(login.user_id, login.device_id);
    log(`device keys on the homeserver (${Date.now() - t0} ms)`);

    emit({ event: "ready", user_id: login.user_id, device_id: login.device_id });
    commandsEnabled = true;
    for (const line of commandQueue.splice(0)) void handleCommand(line);
}

main().catch((err) => {
    log(`start-up failed: ${err?.stack ?? err}`);
    emit({ event: "fatal", message: String(err?.message ?? err) });
    stopping = true;
    try {
        client?.stopClient();
    } catch {}
    process.stdout.write("", () => process.exit(1));
});
