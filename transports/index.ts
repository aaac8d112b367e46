/**
 * `transports/`: MQTT 3.1.1 on mqtt.js, standard-CBOR envelopes, chunked bulk
 * transfer, the embedded aedes broker and the link emulator. The parts above
 * code against `contract.ts` (Bus, Envelope) and create buses with `connectBus`.
 */
export * from './contract.js';
export { MqttBus, connectBus, type BusStats, type RawHandler } from './mqtt-bus.js';
export { encodeEnvelope, decodeEnvelope, validateEnvelope, newMessageId, isExpired, encodeCbor, decodeCbor } from './envelope.js';
export { sendBulk, abortBulk, BulkReceiver, bitmapHas, type BulkSendResult, type ReceivedTransfer, type BulkReceiverStats } from './bulk-transfer.js';
export { startEmbeddedBroker, type EmbeddedBroker, type EmbeddedBrokerOptions } from './embedded-broker.js';
export { startLinkEmulator, type LinkEmulator, type LinkEmulatorStats } from './link-emulator.js';
export { errorAnswerBody, errorFromAnswer, type ErrorAnswerBody, type PlainValue } from './pending-requests.js';
export { TOPIC_ROOT, inboxTopic, appMailboxTopic, topicMatches, isValidFilter } from './topics.js';
export { DEVICE_ID_PATTERN, type BusOptions, type BulkSendOptions, type BulkReceiverOptions, type LinkEmulatorOptions, type EmulatorClock } from './options.js';
export { DurableSession, type DurableSessionOptions, type SessionMessage } from './durable-session.js';
