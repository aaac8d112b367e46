export { checkDefinition, type AppDefinition, type AppFunction, type ServiceRequirement } from './app-definition.js';
export { loadApp, MAX_MODULE_BYTES, type LoadedApp } from './app-loader.js';
export { AppInstance, type AppInstanceOptions, type CallOutcome, type CallResult, type OutboxEntry } from './app-instance.js';
export { loadSandbox, vmModulesAvailable, AGENT_NODE_FLAGS, type Sandbox } from './sandbox.js';
export type { AppHost } from './app-context.js';
