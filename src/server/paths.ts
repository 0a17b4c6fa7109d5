/** The package's own files (common/package-paths.ts; kvctl needs the version too). */
export { packageRoot, packageVersion, protoRoot } from '../common/package-paths.ts'
