// Types of @shopkeeper/client (hand-written; the package is plain JavaScript).
/// <reference types="node" />

export type JsonValue = null | boolean | number | string | Date | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };
/** A Date, ISO 8601 text ("2026-12-01T10:00:00Z") or milliseconds since 1970 (Date.now()). */
export type TimeInput = Date | string | number;
/** {email: 'ann@example.com', cookie: 'ck-1'} or [{namespace, value}] or [[namespace, value]]. */
export type Identities =
  | { [namespace: string]: string | number | Array<string | number> }
  | Array<{ namespace: string; value: string | number } | [string, string | number]>;
/** A customer id, or one identity: {email: 'ann@example.com'} or {namespace, value}. */
export type CustomerRef = string | { id: string } | { [namespace: string]: string } | { namespace: string; value: string };

export interface EventInput {
  type: string;
  identities: Identities;
  /** unique per event; a random UUID when left out (then a retry is a new event) */
  idempotencyKey?: string;
  ts?: TimeInput;
  channel?: string;
  touchpoint?: string;
  data?: JsonObject;
  traits?: JsonObject;
}

export type Outcome = 'OUTCOME_UNSPECIFIED' | 'APPLIED' | 'DUPLICATE' | 'REJECTED';

export interface EventStatus {
  index: number;
  outcome: Outcome;
  customerId: string;
  interactionKey: number;
  created: boolean;
  code: number;
  field: string;
  reason: string;
  merges: string[];
  warnings: string[];
  trace: JsonObject | null;
}

export interface Identity { namespace: string; value: string }
export interface IdentityLink extends Identity { source: string; addedAt: Date | null }
export interface Interaction {
  key: number; ts: Date | null; type: string; channel: string; touchpoint: string; data: JsonObject; idempotencyKey: string;
}
export interface HardFacts {
  orders: number; totalSpend: number; interactions: number; firstSeen: Date | null; lastSeen: Date | null;
  lastChannel: string; lastOrderAt: Date | null;
}
export interface Fact { value: JsonValue; source: string; at: Date | null }
export interface Score { value: number; source: string; at: Date | null }
export interface Consent { channel: string; purpose: string; granted: boolean; source: string; at: Date | null }
export interface Customer {
  id: string;
  status: string;
  mergedInto: string;
  createdAt: Date | null;
  identities: IdentityLink[];
  traits: JsonObject;
  hardFacts: HardFacts;
  interactionCounts: { [type: string]: number };
  softFacts: { [name: string]: Fact };
  consents: Consent[];
  scores: { [name: string]: Score };
  segments: { [segment: string]: Date };
  rules: string[];
  recentInteractions: Interaction[];
}
export interface IdentifyResponse { customer: Customer; created: boolean; merges: string[]; proposals: string[]; warnings: string[] }
export interface Action { kind: string; id: string; score: number; reason: string; payload: JsonObject | null; plugin: string }
export interface DecideResponse {
  customerId: string;
  actions: Action[];
  /** When `actions` hold no offer: why, a contact-policy reason code (no_consent, quiet_hours, capped,
   * control_group, ...); '' when an offer is returned. */
  noOfferReason: string;
  /** The same for people. */
  noOfferDetail: string;
}
export interface Change {
  cursor: number; kind: string; customerId: string; eventType: string; channel: string; at: Date | null;
  interactionKey: number; segments: string[]; detail: string;
}

export interface TlsOptions {
  /** PEM text, a Buffer or a file path */
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}
export interface ClientOptions {
  apiKey?: string;
  /** true: TLS with the system's roots; or the CA (and a client certificate for mTLS) */
  tls?: boolean | TlsOptions;
  /** per unary call; default 30000 */
  deadlineMs?: number;
  channelOptions?: { [option: string]: string | number };
}

export interface StreamOptions { batchSize?: number; maxInFlight?: number; lingerMs?: number }
export interface StreamSummary {
  applied: number; duplicates: number; rejected: number;
  rejections: Array<{ index: number; field: string; reason: string }>;
}
export interface QueuedEvent { index: number; promise: Promise<EventStatus> }

export class EventStream {
  /** Queue one event; waits while maxInFlight batches are unacknowledged. */
  write(event: EventInput): Promise<QueuedEvent>;
  /** Queue one event and resolve with its status after the commit. */
  send(event: EventInput): Promise<EventStatus>;
  flush(): Promise<void>;
  end(): Promise<StreamSummary>;
  readonly maxSeenInFlight: number;
}

export interface WatchOptions {
  afterCursor?: number; fromOldest?: boolean; kinds?: string[]; eventTypes?: string[]; segments?: string[];
  customerIds?: string[]; heartbeatSeconds?: number;
}
export interface Watching extends AsyncIterable<Change> { cancel(): void }

export class Client {
  constructor(address?: string, options?: ClientOptions);
  record(event: EventInput, options?: { trace?: boolean }): Promise<EventStatus>;
  identify(request: { identities: Identities; traits?: JsonObject; source?: string; createOnly?: boolean }): Promise<IdentifyResponse>;
  decide(request: { customer: CustomerRef; placement?: string; context?: JsonObject; limit?: number; touchpoint?: string }): Promise<DecideResponse>;
  getCustomer(customer: CustomerRef, options?: { recent?: number }): Promise<Customer>;
  stream(options?: StreamOptions): EventStream;
  watch(options?: WatchOptions): Watching;
  close(): void;
}

export class ShopkeeperError extends Error {
  /** the gRPC status code's name: 'INVALID_ARGUMENT', 'NOT_FOUND', 'UNAUTHENTICATED', … */
  code: string;
  details: string;
  /** from google.rpc.BadRequest: which field of the request was wrong, and why */
  fieldViolations: Array<{ field: string; description: string }>;
}

export function makeEvent(event: EventInput): object;
/** The CustomerRef message for an id or one identity; throws TypeError naming what is wrong. */
export function customerRef(ref: CustomerRef, path?: string): { id: string } | { identity: Identity };
export function toStruct(obj: JsonObject, path?: string): object;
export function fromStruct(struct: object): JsonObject;
export function toTimestamp(t: TimeInput, path?: string): { seconds: number; nanos: number };
