/** Where the prebuilt CUDA addon is and what it needs; nemotron-node loads it itself. */
export declare const binary: string;
export declare const cudaRuntime: string;
export declare const cudaArchitectures: string[];
export declare const requiredDriver: string;
