// Types of scripts/helm.js for the TypeScript tests that use it.
export class HelmUnavailable extends Error {}
export function helmUnavailable(): string | undefined
export function helmPath(): string
export function readZipEntry(path: string, name: string, bytesMax: number): Buffer
